# atp — every command a developer or CI runs. `just --list` shows them.

set shell := ["bash", "-euo", "pipefail", "-c"]

venv := ".venv"
python := venv + "/bin/python"
stamp := venv + "/.installed"

# Create the venv, install atp with its dev tools (editable) and redis-server if missing.
# Installs only when pyproject.toml changed since the last install (its hash is in .venv/.installed);
# every recipe that runs the venv's tools depends on it, so a fresh clone needs no `just setup`.
setup:
    #!/usr/bin/env bash
    set -euo pipefail
    want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
    if [ ! -x {{python}} ] || [ "$(cat {{stamp}} 2>/dev/null)" != "$want" ]; then
        test -x {{python}} || python3 -m venv {{venv}}
        {{python}} -m pip install -q --disable-pip-version-check --upgrade pip
        {{python}} -m pip install -q --disable-pip-version-check -e '.[dev,chaos,load]'
        echo "$want" > {{stamp}}
    fi
    command -v redis-server >/dev/null || just _install-redis

_install-redis:
    #!/usr/bin/env bash
    set -euo pipefail
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    else
        echo "redis-server is missing: install it (e.g. sudo apt-get install redis-server) or run atp with --redis-url" >&2
        exit 1
    fi

# Regenerate the protobuf/gRPC code (committed) from proto/queue.proto.
proto: setup
    PATH="$PWD/{{venv}}/bin:$PATH" {{python}} -m grpc_tools.protoc -Iappliance/proto=proto --python_out=. --grpc_python_out=. --mypy_out=. --mypy_grpc_out=. proto/queue.proto

# Fail when the committed generated code differs from what `just proto` makes.
proto-check: proto
    git diff --exit-code -- appliance/proto/queue_pb2* || (echo "generated code is stale: run 'just proto' and commit" >&2; exit 1)

# ruff (lint + format check) and mypy --strict.
lint: setup
    {{venv}}/bin/ruff check .
    {{venv}}/bin/ruff format --check .
    {{venv}}/bin/mypy

# Format the code in place.
fmt: setup
    {{venv}}/bin/ruff check --fix .
    {{venv}}/bin/ruff format .

# The default test run (real redis-server started by the fixtures; slow tests excluded).
test *args: setup
    {{venv}}/bin/pytest -m "not slow" {{args}}

# Everything CI runs.
check: proto-check lint test

# Run the whole appliance (--role=all, embedded Redis in ./atp-data) with the demo topic:
# a scheduled demo task every 5 s shows up in the log. Ctrl-C drains and stops.
run *args: setup
    {{venv}}/bin/atp --role=all --config config/demo.yaml {{args}}

# The console's first-paint budget: 10,000 topics, headless Chromium, prints the figures (~1 min).
console-budget: setup
    {{venv}}/bin/pytest -m slow tests/console/test_budget.py -s -q

# 100,000 workflow runs waiting in a 3-day delay do not grow W7's hand-off latency; prints the
# hand-off with none and with all of them waiting and the bytes per waiting run (~5-10 min).
test-waiting *args: setup
    {{venv}}/bin/pytest -m slow tests/workflows/test_many_waiting.py -s -q {{args}}

# Build the real external clients the tests use (grpcurl; toxiproxy for chaos) into .tools/.
tools:
    mkdir -p .tools
    test -x .tools/grpcurl || GOBIN="$PWD/.tools" go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4
    test -x .tools/toxiproxy-server || (GOBIN="$PWD/.tools" go install github.com/Shopify/toxiproxy/v2/cmd/server@v2.5.0 && mv .tools/server .tools/toxiproxy-server)

# Needs nginx (apt-get install nginx-light); runs deploy/nginx/atp.conf.template. About 2 minutes.
# The role split behind nginx, slow tests: a server SIGKILLed under load, 70 s long poll and idle stream.
lb-slow: setup
    {{venv}}/bin/pytest -m slow tests/lb -q

# Quick core figures (enqueue, fetch+ack, lateness) against a throwaway server + Redis.
core-bench *args: setup
    {{python}} loadtest/core_bench.py {{args}}

# One-file executable dist/atp (PyInstaller); the .lua scripts travel inside as data.
binary: setup
    @{{python}} -c 'import PyInstaller' 2>/dev/null || {{python}} -m pip install -q --disable-pip-version-check 'pyinstaller>=6'
    {{venv}}/bin/pyinstaller --noconfirm --clean --onefile --name atp \
        --collect-submodules appliance --collect-data appliance \
        --collect-submodules grpc_health --collect-submodules grpc_reflection \
        --distpath dist --workpath build/pyinstaller --specpath build \
        --log-level WARN appliance/__main__.py
    ls -l dist/atp

# The container image `atp:latest` from the Dockerfile with buildah (`--isolation chroot`, no
# Docker engine or registry needed), after `just image-base`; on a machine with Docker,
# `docker build -t atp .` builds the same Dockerfile (docs/adr/0015-container-image.md).
image tag="atp:latest": image-base
    buildah bud --isolation chroot --format docker --pull=never --layers --tag {{tag}} .

# The base image the Dockerfile names (debian:bookworm-slim), made locally when missing:
# Debian bookworm minbase from the mirror apt uses, plus the machine's pip trust (the CA
# bundle its pip names, for a TLS-intercepting proxy), imported under that name. Needs root.
image-base:
    #!/usr/bin/env bash
    set -euo pipefail
    base="$(awk 'toupper($1) == "FROM" {print $2; exit}' Dockerfile)"
    if buildah inspect --type image "$base" >/dev/null 2>&1; then exit 0; fi
    apt_uris() { cat /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
        | sed -n -e 's/^URIs: *//p' -e 's/^deb \(\[[^]]*\] \)\{0,1\}\([^ ]*\) .*/\2/p' | tr ' ' '\n'; }
    mirror="$(apt_uris | grep -v security | head -n1 || true)"
    security="$(apt_uris | grep security | head -n1 || true)"
    mirror="${mirror:-http://deb.debian.org/debian}"
    security="${security:-http://deb.debian.org/debian-security}"
    root="$(mktemp -d)"
    trap 'rm -rf "$root"' EXIT
    echo "debootstrap --variant=minbase bookworm from $mirror (about a minute) -> $base"
    debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.log" 2>&1 || { tail -n 20 "$root.log"; exit 1; }
    rm -f "$root.log"
    printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb %s bookworm-security main\n' \
        "$mirror" "$mirror" "$security" >"$root/etc/apt/sources.list"
    # As Docker's Debian images: packages never start services at install time.
    printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d" && chmod 755 "$root/usr/sbin/policy-rc.d"
    cert="${PIP_CERT:-$(sed -n 's/^cert *= *//p' /etc/pip.conf 2>/dev/null | head -n1 || true)}"
    if [ -n "$cert" ] && [ -f "$cert" ]; then
        mkdir -p "$root/etc/ssl" && cp "$cert" "$root/etc/ssl/host-ca-bundle.pem"
        printf '[global]\ncert = /etc/ssl/host-ca-bundle.pem\n' >"$root/etc/pip.conf"
    fi
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*
    tar -C "$root" -c . | podman import --change 'CMD ["bash"]' - "$base" >/dev/null
    echo "made $base"

# The container test (slow): `just image`, then `atp --role=all` in it as its user, a delayed
# task, the HEALTHCHECK command and a SIGTERM drain (tests/image; buildah, debootstrap, root).
image-test *args: setup
    {{venv}}/bin/pytest -m slow tests/image -q -s {{args}}

# Locust gRPC load, headless and bounded (loadtest/README.md): against --host ADDR, or by
# default a local `atp --role=all` (embedded Redis, throwaway data dir) that it starts and
# ends (`--local-role server`: atp --role=server + redis-server). E.g.
# `just load --profile producer --users 50 --run-time 60s`.
load *args: setup
    {{python}} loadtest/load.py {{args}}

# atp against Celery, arq and BullMQ (fair W1, enqueue, W2..W6), each on its own fresh
# redis-server; writes docs/BENCHMARKS.md. `--only w1,w3`, `--systems atp,bullmq`, `--short`
# (loadtest/README.md). Peers go to .bench/ (git-ignored), never to .venv.
bench *args: setup
    test -x .bench/venv/bin/python || python3 -m venv .bench/venv
    .bench/venv/bin/python -m pip install -q -r loadtest/peers/requirements.txt
    mkdir -p .bench/node
    cp loadtest/peers/package.json loadtest/peers/package-lock.json .bench/node/
    npm ci --prefix .bench/node --silent --no-audit --no-fund
    {{python}} loadtest/bench.py --bench-python .bench/venv/bin/python --node-dir .bench/node --py-spy .bench/venv/bin/py-spy --command "just bench {{args}}" {{args}}

# Scenarios: Redis latency, blackhole, resets, slow links, a worker partition, SIGKILL/SIGSTOP
# of workers, Redis restart, scheduler leader kill, and workflow runs under advancer kills,
# Redis restarts, lost Ack replies and signals racing their timeout (runs checked too);
# real processes behind the real toxiproxy.
# Each run's history is checked; the table goes to chaos/results/<date>.md; exit 1 on a break.
# Chaos scenarios, all or the named ones (`just chaos latency worker_kill`; `--list` shows them).
chaos *scenarios: setup tools
    {{python}} -m chaos {{scenarios}}

# The CI subset of the chaos scenarios (latency, worker SIGKILL, Redis restart, supervisor
# SIGKILL, stream worker SIGKILL, server SIGKILL behind nginx, workflow advancing server
# SIGKILL): about 3.5 minutes.
chaos-quick: setup tools
    {{python}} -m chaos --quick
