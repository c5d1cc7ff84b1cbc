"""Shared checks for executor config entries: each error names its key (topics.<t>.<key>)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from appliance.config import as_int
from appliance.errors import ConfigError
from appliance.model import Task

Handler = Callable[[Task], Any]


def optional_positive(spec: Mapping[str, Any], key: str, where: str) -> int | None:
    value = spec.get(key)
    if value is None:
        return None
    number = as_int(f"{where}.{key}", value)  # durations (`_ms` keys) may say 10s, 5m, ...
    if number <= 0:
        raise ConfigError(f"{where}.{key}: expected a whole number > 0, got {value!r}")
    return number


def required_str(spec: Mapping[str, Any], key: str, where: str) -> str:
    value = spec.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}.{key}: required, a non-empty string")
    return value


def check_keys(spec: Mapping[str, Any], where: str, allowed: set[str]) -> None:
    common = {"executor", "concurrency", "visibility_timeout_ms"}
    unknown = set(spec) - allowed - common
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
