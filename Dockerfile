# syntax=docker/dockerfile:1

# --- builder: a virtualenv with Stratus and its runtime dependencies (no dev extras) ---------
FROM python:3.11-slim AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml setup.py README.md ./
COPY app ./app
COPY workers ./workers
COPY migrations ./migrations
RUN /opt/venv/bin/pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/venv/bin/pip install /wheels/*.whl

# --- runtime: slim Python, the venv, an unprivileged user -----------------------------------
FROM python:3.11-slim AS runtime

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    STRATUS_DATA_DIR=/var/lib/stratus

RUN groupadd --system --gid 10001 stratus \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/stratus --no-create-home \
      --shell /usr/sbin/nologin stratus \
 && mkdir -p /var/lib/stratus \
 && chown 10001:10001 /var/lib/stratus

COPY --from=builder /opt/venv /opt/venv

WORKDIR /var/lib/stratus
USER 10001:10001

EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

CMD ["uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "8000"]
