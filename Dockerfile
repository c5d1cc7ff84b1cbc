# atp — one image, every role. Build: docker build -t atp .   Run: docker run -p 9090:9090 atp
# Both stages use Debian bookworm's own python3 (3.11): stage 1 installs atp into a venv at
# /opt/atp, stage 2 copies that venv next to the same python3 and redis-server for the embedded
# default (`--role=all` with no ATP_REDIS_URL). Without Docker: `just image` (docs/adr/0015).

FROM debian:bookworm-slim AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY appliance ./appliance
# The project itself (local path, its versions pinned in pyproject.toml): nothing to pin here.
# hadolint ignore=DL3013
RUN python3 -m venv /opt/atp \
    && /opt/atp/bin/pip install --no-cache-dir --disable-pip-version-check . \
    && /opt/atp/bin/atp --help >/dev/null

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 redis-server \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 atp \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/atp --create-home atp
COPY --from=build /opt/atp /opt/atp
COPY config/atp.example.yaml /etc/atp/atp.example.yaml
ENV PATH=/opt/atp/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    ATP_GRPC_ADDR=0.0.0.0:9090 \
    ATP_HTTP_ADDR=0.0.0.0:9100 \
    ATP_DATA_DIR=/var/lib/atp
USER 10001
WORKDIR /var/lib/atp
VOLUME ["/var/lib/atp"]
EXPOSE 9090 9100
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 CMD ["atp", "healthcheck"]
# The supervisor reaps its children and turns SIGTERM into a staged drain (it may be PID 1).
STOPSIGNAL SIGTERM
ENTRYPOINT ["atp"]
CMD ["--role=all"]
