"""Step payload templates: Jinja2's sandboxed environment, not an expression parser of ours.

A template sees `input` (the run's input) and `steps` (`steps.<name>.output`, each finished
parent's Ack result); both are parsed as JSON when they are JSON, else kept as text. Undefined
names fail (StrictUndefined), so a typo fails its step instead of sending an empty value; an
object or list printed whole is JSON.
Must not import grpc or redis.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from typing import Any

import jinja2
from jinja2 import meta
from jinja2.sandbox import SandboxedEnvironment

from appliance.errors import InvalidArgument

NAMES = frozenset({"input", "steps", "failed"})  # failed: on_failure steps only


def _finalize(value: Any) -> Any:
    """An object or list printed by `{{ }}` is JSON (not Python's repr)."""
    return json.dumps(value) if isinstance(value, dict | list) else value


_ENV = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False, finalize=_finalize)


@functools.lru_cache(maxsize=1024)
def _compiled(template: str) -> jinja2.Template:
    """A template compiled once (compiling costs far more than rendering)."""
    return _ENV.from_string(template)


@functools.lru_cache(maxsize=1024)
def _expression(expression: str) -> Callable[..., Any]:
    return _ENV.compile_expression(expression)


def check(template: str, field: str, expression: bool = False) -> None:
    """InvalidArgument unless `template` (or a `when` expression) parses and names nothing but
    input, steps and failed."""
    try:
        names = meta.find_undeclared_variables(
            _ENV.parse("{{ (" + template + ") }}" if expression else template)
        )
    except jinja2.TemplateSyntaxError as exc:
        raise InvalidArgument(f"{field}: bad template (line {exc.lineno}: {exc.message})") from None
    unknown = sorted(names - NAMES)
    if unknown:
        raise InvalidArgument(
            f"{field}: a template may name only input, steps and failed, not {unknown}"
        )


def is_template(text: str) -> bool:
    """Whether `text` has any Jinja2 markup (else it renders as itself)."""
    return any(mark in text for mark in ("{{", "{%", "{#"))


def value(text: str) -> Any:
    """JSON text as its value; any other text as itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _context(
    run_input: str, outputs: Mapping[str, str], states: Mapping[str, str] | None = None
) -> dict[str, Any]:
    steps = {
        name: {"output": value(out), "state": (states or {}).get(name, "SUCCEEDED")}
        for name, out in outputs.items()
    }
    return {"input": value(run_input), "steps": steps}


def holds(
    expression: str, run_input: str, outputs: Mapping[str, str], states: Mapping[str, str]
) -> bool:
    """Whether a step's `when` holds: `steps.<name>.output` / `.state` of every finished step.
    ValueError when it cannot be evaluated (the step fails)."""
    try:
        return bool(_expression(expression)(**_context(run_input, outputs, states)))
    except (jinja2.TemplateError, TypeError, ValueError, ArithmeticError) as exc:
        raise ValueError(f"when: {type(exc).__name__}: {exc}") from None


def render(
    template: str,
    run_input: str,
    outputs: Mapping[str, str],
    failed: Mapping[str, str] | None = None,
) -> str:
    """The payload; ValueError with the reason when rendering fails (the step fails).
    `failed`: for an on_failure step, {step, error} of the step that failed."""
    context = _context(run_input, outputs)
    if failed is not None:
        context["failed"] = dict(failed)
    try:
        return _compiled(template).render(**context)
    except (jinja2.TemplateError, TypeError, ValueError, ArithmeticError) as exc:
        raise ValueError(f"template: {type(exc).__name__}: {exc}") from None
