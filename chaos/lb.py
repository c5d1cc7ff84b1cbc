"""nginx as the gRPC load balancer in front of atp servers, on loopback, running the shipped
deploy/nginx/atp.conf.template (rendered as the nginx image's envsubst step would) inside a
private main config (its own pid, error log and temp dirs, `daemon off`). Used by the
`lb_server_kill` chaos scenario and the role-split tests (tests/lb).

Stdlib only; imports nothing of atp.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from chaos.procs import ROOT, Child, can_connect, free_port, wait_for

TEMPLATE = ROOT / "deploy/nginx/atp.conf.template"
PLACEHOLDER = re.compile(r"\$\{(ATP_[A-Z_]+)\}")
TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def render(template: str, values: dict[str, str]) -> str:
    """The template with every ${ATP_*} filled in (envsubst's syntax; nginx's own $variables
    are left alone). A placeholder without a value, or a value without a placeholder, is an
    error: the deploy files and the tests must fill in the same names."""
    names = set(PLACEHOLDER.findall(template))
    if names != set(values):
        raise ValueError(f"template wants {sorted(names)}, given {sorted(values)}")
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


SERVER_PARAMS = "max_fails=0"


def upstream_servers(addresses: Sequence[str]) -> str:
    """The ${ATP_UPSTREAM_SERVERS} value for these host:port addresses. `max_fails=0`: nginx
    never marks a server down; one that refuses a connection costs that call a retry on the
    next server (docs/adr/0014-load-balancer.md says why)."""
    return " ".join(f"server {a} {SERVER_PARAMS};" for a in addresses)


def main_config(run_dir: Path, include: Path) -> str:
    """A private nginx.conf around the shipped http{}-context file: its own pid, logs and temp
    dirs in `run_dir`, in the foreground, one worker process."""
    temps = "\n".join(f"    {t}_temp_path {run_dir / t};" for t in TEMP_DIRS)
    return (
        "daemon off;\nworker_processes 1;\n"
        f"pid {run_dir / 'nginx.pid'};\nerror_log {run_dir / 'error.log'} info;\n"
        "events { worker_connections 4096; }\n"
        "http {\n"
        '    log_format upstream "$status $upstream_addr $upstream_status $request_uri";\n'
        f"    access_log {run_dir / 'access.log'} upstream;\n{temps}\n    include {include};\n}}\n"
    )


class Nginx:
    """nginx on a free loopback port with `grpc_pass` to `servers` (host:port each)."""

    def __init__(self, run_dir: Path, servers: Sequence[str], port: int | None = None) -> None:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(binary).exists():
            raise RuntimeError("nginx is not installed (apt-get install nginx-light)")
        self.dir = run_dir / "nginx"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        values = {"ATP_LB_LISTEN": self.address, "ATP_UPSTREAM_SERVERS": upstream_servers(servers)}
        site = self.dir / "atp.conf"
        site.write_text(render(TEMPLATE.read_text(), values))
        conf = self.dir / "nginx.conf"
        conf.write_text(main_config(self.dir, site))
        argv = [binary, "-p", str(self.dir), "-e", str(self.dir / "error.log"), "-c", str(conf)]
        self.child = Child("nginx", argv, run_dir)

    def start(self, timeout: float = 15) -> Nginx:
        self.child.start()
        if not wait_for(lambda: can_connect(self.port) or not self.child.alive(), timeout):
            raise RuntimeError(f"nginx did not listen: {self.error_log()}")
        if not self.child.alive():
            raise RuntimeError(f"nginx ended: {self.child.output()} {self.error_log()}")
        return self

    def stop(self) -> None:
        self.child.stop(10)

    def access_log(self) -> list[str]:
        """One line per call: status, the upstream server(s) tried and their statuses, path."""
        try:
            return (self.dir / "access.log").read_text(errors="replace").splitlines()
        except OSError:
            return []

    def error_log(self, tail: int = 3000) -> str:
        """The last `tail` characters of nginx's error log (0: all of it)."""
        try:
            return (self.dir / "error.log").read_text(errors="replace")[-tail:]
        except OSError:
            return ""
