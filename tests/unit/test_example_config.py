"""config/atp.example.yaml documents every setting and loads as it is."""

from __future__ import annotations

from pathlib import Path

import yaml

from appliance import config

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "atp.example.yaml"


def test_example_names_every_setting() -> None:
    documented = set(yaml.safe_load(EXAMPLE.read_text()))
    assert documented == set(config.FIELDS)


def test_example_loads() -> None:
    settings = config.load(str(EXAMPLE), environ={})
    assert settings.visibility_timeout_ms == 30_000
    assert settings.topics["order-cancel"]["executor"] == "http"
    assert settings.schedules[0]["id"] == "nightly-report"


def test_example_executors_validate_except_the_made_up_callable_and_program() -> None:
    import pytest

    from appliance.errors import ConfigError
    from appliance.executors import build_all

    topics = config.load(str(EXAMPLE), environ={}).topics
    with pytest.raises(ConfigError, match=r"topics\.daily-report\.callable"):
        build_all(topics)
    with pytest.raises(ConfigError, match=r"topics\.thumbnails\.command"):
        build_all({"thumbnails": topics["thumbnails"]})
    made_up = {"daily-report", "thumbnails"}
    assert len(build_all({k: v for k, v in topics.items() if k not in made_up})) == 1
