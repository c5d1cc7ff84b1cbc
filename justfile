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
