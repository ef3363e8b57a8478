# tierq: one image for both modes.
#   embedded (default): SQLite record tier in the /data volume, nothing else needed
#     docker run -p 8080:8080 -v tierq-data:/data tierq
#   distributed: set TIERQ_DATABASE_URL=postgresql://... and TIERQ_REDIS_URL=redis://...
#     (see docker-compose.yml)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed uid so volume ownership and Kubernetes' runAsUser agree.
RUN useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin tierq \
    && mkdir -p /data \
    && chown tierq:tierq /data

WORKDIR /app
# Metadata first so the dependency layer is cached while only the code changes.
COPY pyproject.toml README.md ./
COPY tierq ./tierq
# otel: tracing can be turned on with TIERQ_TRACING=true and the OTEL_* variables.
RUN pip install ".[distributed,otel]" \
    && rm -rf /app/build /app/*.egg-info

USER tierq
WORKDIR /data
VOLUME ["/data"]

# TIERQ_AUTH=required: the container listens on every interface, so every API call needs a
# key. Make the first one with `docker run ... tierq keys create --name ops --role admin`
# (embedded: while the server is stopped; it prints the secret on its last line).
ENV TIERQ_DATABASE_URL=sqlite:////data/tierq.db \
    TIERQ_PORT=8080 \
    TIERQ_AUTH=required

EXPOSE 8080

# Liveness only: /health/ready turns 503 while the record tier is unreachable, and a restart
# would not fix that. Reads TIERQ_PORT so an overridden port is still checked.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/live' % os.environ.get('TIERQ_PORT', '8080'), timeout=2)" || exit 1

# SIGTERM starts a graceful stop (running tasks get TIERQ_SHUTDOWN_GRACE_S, 30 s by default):
# give `docker stop` a --time above that.
STOPSIGNAL SIGTERM
CMD ["tierq", "serve", "--host", "0.0.0.0"]
