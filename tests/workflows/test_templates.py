"""Step payload templates: Jinja2's sandbox over input and steps.<name>.output."""

from __future__ import annotations

import pytest

from appliance.errors import InvalidArgument
from appliance.workflows import templates


def test_input_and_outputs_are_json_when_they_are_json() -> None:
    out = templates.render(
        '{"to": "{{ input.email }}", "ref": "{{ steps.welcome.output.id }}", '
        '"all": {{ steps.welcome.output }}}',
        '{"email": "a@b.c"}',
        {"welcome": '{"id": 7}'},
    )
    assert out == '{"to": "a@b.c", "ref": "7", "all": {"id": 7}}'
    assert templates.render("{{ input }}-{{ steps.a.output }}", "plain", {"a": "text"}) == (
        "plain-text"
    )


def test_an_undefined_name_fails_instead_of_sending_nothing() -> None:
    with pytest.raises(ValueError, match="template: UndefinedError"):
        templates.render("{{ input.missing }}", "{}", {})


def test_the_sandbox_refuses_python_internals() -> None:
    with pytest.raises(ValueError, match="SecurityError"):
        templates.render("{{ input.__class__.__mro__ }}", "{}", {})


def test_check_refuses_syntax_errors_and_other_names() -> None:
    templates.check("{{ input.a }} {{ steps.b.output }}", "f")
    with pytest.raises(InvalidArgument, match="f: bad template"):
        templates.check("{% if %}", "f")
    with pytest.raises(InvalidArgument, match="not \\['secret'\\]"):
        templates.check("{{ secret }}", "f")
