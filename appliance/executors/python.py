"""The `python` executor: a `module:function` callable, sync or async, given the Task."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from appliance.errors import ConfigError
from appliance.executors.spec import Handler, check_keys, required_str


def build(where: str, spec: Mapping[str, Any]) -> Handler:
    check_keys(spec, where, {"callable"})
    target = required_str(spec, "callable", where)
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"{where}.callable: expected 'module:function', got {target!r}")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"{where}.callable: cannot load {target!r}: {exc}") from exc
    if not callable(obj):
        raise ConfigError(f"{where}.callable: {target!r} is not callable")
    handler: Handler = obj
    return handler
