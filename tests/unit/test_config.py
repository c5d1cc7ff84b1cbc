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
        ({"ATP_DURABILITY": "fsync"}, "durability: 'fsync' is not local|replicated"),
        (
            {"ATP_DURABILITY": "replicated", "ATP_DURABILITY_TIMEOUT_MS": "2s"},
            "durability_timeout_ms: must be below",
        ),
        ({"ATP_DURABILITY_TIMEOUT_MS": "0"}, "durability_timeout_ms: must be > 0"),
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


@pytest.mark.parametrize(
    ("value", "ms"),
    [("1500", 1500), ("1.5s", 1500), ("2m", 120_000), ("1d", 86_400_000), ("250ms", 250)],
)
def test_durations_in_ms_settings(value: str, ms: int) -> None:
    """A `*_ms` setting: a bare number is milliseconds (the name says so), or any unit."""
    assert config.load(environ={"ATP_RETENTION_MS": value}).retention_ms == ms


@pytest.mark.parametrize("value", ["-5s", "-1", "soon", "5 parsecs", "true"])
def test_bad_durations_name_their_key(value: str) -> None:
    with pytest.raises(ConfigError, match=r"^visibility_timeout_ms: (must be >= 0|expected)"):
        config.load(environ={"ATP_VISIBILITY_TIMEOUT_MS": value})


def test_the_config_and_the_schedules_share_the_duration_parser() -> None:
    from appliance.scheduler.definitions import duration_ms

    assert duration_ms("1.5s", "schedules[0].interval_ms") == config.as_int("x_ms", "1.5s")
    assert duration_ms("250", "schedules[0].interval_ms") == 250  # the key says ms
    with pytest.raises(Exception, match="has no unit"):
        duration_ms("250", "--every")  # a flag without a unit in its name needs one


def test_every_setting_has_a_sentence_of_help() -> None:
    assert set(config.HELP) == set(config.FIELDS)
    assert all(len(text.split()) >= 3 for text in config.HELP.values())


def test_the_replica_wait_limit_binds_only_replicated_durability() -> None:
    """With local durability nothing waits for a replica: a short redis_timeout_ms is fine."""
    settings = config.load(environ={"ATP_REDIS_TIMEOUT_MS": "200"})
    assert settings.durability == "local" and settings.redis_timeout_ms == 200
    with pytest.raises(ConfigError, match="durability_timeout_ms: must be below"):
        config.load(environ={"ATP_REDIS_TIMEOUT_MS": "200", "ATP_DURABILITY": "replicated"})
