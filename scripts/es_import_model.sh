#!/usr/bin/env bash
# Import a local sentence-transformers model into Elasticsearch as a started text_embedding model.
# Usage: scripts/es_import_model.sh ES_URL MODEL_DIR MODEL_ID [--replace]
# Creates (once) and reuses a tools venv with eland 8.12.1; see es_import_model.py.
set -euo pipefail
[[ $# -ge 3 ]] || { echo "usage: $0 ES_URL MODEL_DIR MODEL_ID [--replace]" >&2; exit 2; }

VENV="${FINDIMAGE_CACHE:-$HOME/.cache/findimage}/tools-venv"
# eland 8.12.1 (8.13+ refuse ES 8.12) pins torch<2, which PyPI has only as multi-GB CUDA builds: its
# other needs are installed with eland's own transformers cap (4.33.2: BERT with eager attention
# only), then eland --no-deps. torch is the CPU build of requirements-torch.txt; never a bare torch.
TORCH_REQS="$(dirname "$0")/../requirements-torch.txt"
REQS=("$(grep -E '^torch==' "$TORCH_REQS")" transformers==4.33.2 sentence-transformers==2.3.1 'numpy<2' 'pandas<2' matplotlib
      'elasticsearch>=8.12,<8.13')
ELAND=eland==8.12.1

if [[ "$(cat "$VENV/.ready" 2>/dev/null)" != "${REQS[*]} $ELAND" ]]; then
  echo "es_import_model.sh: creating tools venv $VENV (log: $VENV.log)" >&2
  rm -rf "$VENV"
  { python3.11 -m venv "$VENV" &&
    "$VENV/bin/pip" install --extra-index-url https://download.pytorch.org/whl/cpu "${REQS[@]}" &&
    "$VENV/bin/pip" install --no-deps "$ELAND"; } >"$VENV.log" 2>&1 \
    || { tail -n 30 "$VENV.log" >&2; exit 1; }
  echo "${REQS[*]} $ELAND" > "$VENV/.ready"             # written last: a killed setup is redone
fi

HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false TQDM_DISABLE=1 \
  exec "$VENV/bin/python" -W ignore "$(dirname "$0")/es_import_model.py" "$@"
