"""Settings: file < environment < flags, validated with the bad key's name."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance import config
from appliance.errors import ConfigError


def test_precedence_file_env_flags(tmp_path: Path) -> None:
    path = tmp_path / "atp.yaml"
    path.write_text("batch_max: 10\nvisibility_timeout_ms: 5s\nkey_prefix: fromfile\n")
    settings = config.load(
        str(path),
        environ={"ATP_BATCH_MAX": "20", "ATP_KEY_PREFIX": "fromenv"},
        flags={"key_prefix": "fromflag", "grpc_addr": None},
    )
    assert settings.batch_max == 20
    assert settings.visibility_timeout_ms == 5000
    assert settings.key_prefix == "fromflag"
    assert settings.grpc_addr == "127.0.0.1:9090"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"ATP_BATCH_MAX": "lots"}, "batch_max"),
        ({"ATP_BATCH_MAX": "0"}, "batch_max"),
        ({"ATP_NO_SUCH_THING": "1"}, "no_such_thing: unknown setting"),
        ({"ATP_KEY_PREFIX": "has space"}, "key_prefix"),
        ({"ATP_LOG_LEVEL": "loud"}, "log_level"),
        ({"ATP_GRPC_REUSE_PORT": "maybe"}, "grpc_reuse_port"),
    ],
)
def test_bad_values_name_their_key(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config.load(environ=environ)


def test_bad_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        bad = tmp_path / "bad.yaml"
        bad.write_text("a: [")
        config.load(str(bad), environ={})
    with pytest.raises(ConfigError, match=r"missing\.yaml"):
        config.load(str(tmp_path / "missing.yaml"), environ={})


def test_cli_exits_78_on_bad_config() -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "appliance", "--role=server", "--batch-max=x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 78
    assert "batch_max" in out.stderr
