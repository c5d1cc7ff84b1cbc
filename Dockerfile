# atp — one binary, every role. Build: docker build -t atp .   Run: docker run -p 9090:9090 atp
# Stage 1 builds the one-file PyInstaller binary; stage 2 is a slim Debian with redis-server for
# the embedded default (`--role=all` with no ATP_REDIS_URL).

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
RUN apt-get update \
    && apt-get install -y --no-install-recommends binutils \
    && rm -rf /var/lib/apt/lists/*
COPY pyproject.toml README.md ./
COPY appliance ./appliance
# The project itself (local path, its versions pinned in pyproject.toml): nothing to pin here.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir '.[binary]' \
    && pyinstaller --noconfirm --onefile --name atp \
        --collect-submodules appliance --collect-data appliance \
        --collect-submodules grpc_health --collect-submodules grpc_reflection \
        --distpath /out --workpath /tmp/build --specpath /tmp/build appliance/__main__.py

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/atp --create-home atp
COPY --from=build /out/atp /usr/local/bin/atp
COPY config/atp.example.yaml /etc/atp/atp.example.yaml
ENV ATP_GRPC_ADDR=0.0.0.0:9090 \
    ATP_HTTP_ADDR=0.0.0.0:9100 \
    ATP_DATA_DIR=/var/lib/atp
USER 10001
WORKDIR /var/lib/atp
VOLUME ["/var/lib/atp"]
EXPOSE 9090 9100
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 CMD ["atp", "healthcheck"]
ENTRYPOINT ["atp"]
CMD ["--role=all"]
