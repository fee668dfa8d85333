#!/usr/bin/env bash
# The whole test suite: generated test models, the real Elasticsearch test server, pytest.
# FINDIMAGE_TEST_ES=off skips the Elasticsearch server (its tests are then skipped, and say so).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

$PY scripts/make_test_models.py --variant tiny >/dev/null

if [ "${FINDIMAGE_TEST_ES:-on}" != off ]; then
  bash scripts/elasticsearch.sh start
  trap 'bash scripts/elasticsearch.sh stop' EXIT
  FINDIMAGE_TEST_ES_URL="$(bash scripts/elasticsearch.sh url)"
  export FINDIMAGE_TEST_ES_URL
fi

$PY -m pytest -q "$@"
