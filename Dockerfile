# findimage: the Slack bot (`findimage bot`) and the scheduled indexer (`findimage schedule`).
# docker-compose.yml runs both from this image (on the embedded store, or with Elasticsearch).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# torch first, the CPU build (requirements-torch.txt: a `+cpu` version from PyTorch's CPU index): a bare
# `torch` requirement pulls a multi-GB CUDA build.
COPY requirements-torch.txt /tmp/
RUN pip install -r /tmp/requirements-torch.txt

WORKDIR /app
# Then every other dependency at the exact version and hash of requirements.lock (`make lock`), in a
# layer of its own that code changes do not invalidate. The build uses the locked setuptools too.
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml README.md findimage_cli.py ./
COPY findimage ./findimage
COPY indexer ./indexer
COPY bot ./bot
RUN pip install --no-deps --no-build-isolation . \
 && pip check \
 && python -c "import torch; assert torch.__version__.endswith('+cpu'), torch.__version__"

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin findimage \
 && mkdir -p /data /archive /home/findimage/.cache/huggingface /keys/bot /keys/indexer \
 && chown -R findimage:findimage /data /home/findimage/.cache /keys
USER findimage

# The archive is mounted read-only at /archive; /data holds the lock files (and the embedded store when
# ELASTICSEARCH_URL is unset); models are downloaded once into the Hugging Face cache (a volume).
ENV FINDIMAGE_ARCHIVE=/archive \
    FINDIMAGE_DATA_DIR=/data \
    HF_HOME=/home/findimage/.cache/huggingface \
    PORT=3000
EXPOSE 3000
CMD ["findimage", "bot"]
