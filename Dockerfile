# agent-server: one stateless replica. State lives in Redis (REDIS_URL) and SQL
# (DATABASE_URL); without them it falls back to files under /app/data.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 agent
COPY --from=build /install /usr/local
WORKDIR /app
RUN mkdir -p /app/data && chown agent /app/data
USER agent
ENV HOST=0.0.0.0 \
    PORT=8000 \
    LOG_FORMAT=json \
    PYTHONUNBUFFERED=1
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz').status != 200)"
# Stop with SIGTERM: running turns get SHUTDOWN_GRACE_SECONDS to finish.
STOPSIGNAL SIGTERM
CMD ["agent-server", "serve"]
