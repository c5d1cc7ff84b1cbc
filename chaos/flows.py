"""The workflows the chaos scenarios run, as the checker sees them (chaos/runcheck.py's specs;
chaos/runs.py puts them through the SDK's builder). Their step tasks go to WF_TOPIC, where the
recording workers run them by the payload's `ms` and `mode` (chaos/worker.py).

- `diamond`: a; b after a (+300 ms); c after a (its mode from the input: ok, fail_once or dead,
  which fails the run); d after b and c; e after b or c (+200 ms); undo on failure.
- `order`: the seed's order timeout: wait for `paid` up to ORDER_TIMEOUT_MS, then ship; else
  cancel-order (on failure).

Stdlib only; imports nothing of atp.
"""

from __future__ import annotations

from chaos.runcheck import FlowSpec, StepSpec

WF_TOPIC = "chaos-wf"
ORDER_TIMEOUT_MS = 800
OK_STEP = '{"ms": {{ input.ms }}, "mode": "ok"}'

DIAMOND = FlowSpec(
    "diamond",
    (
        StepSpec("a", WF_TOPIC, OK_STEP),
        StepSpec("b", WF_TOPIC, OK_STEP, after=("a",), delay_ms=300),
        StepSpec("c", WF_TOPIC, '{"ms": {{ input.ms }}, "mode": "{{ input.c }}"}', after=("a",)),
        StepSpec("d", WF_TOPIC, OK_STEP, after=("b", "c")),
        StepSpec("e", WF_TOPIC, OK_STEP, after=("b", "c"), after_any=True, delay_ms=200),
        StepSpec("undo", WF_TOPIC, OK_STEP, on_failure=True),
    ),
)
ORDER = FlowSpec(
    "order",
    (
        StepSpec("paid", signal="paid", timeout_ms=ORDER_TIMEOUT_MS),
        StepSpec("ship", WF_TOPIC, OK_STEP, after=("paid",)),
        StepSpec("cancel-order", WF_TOPIC, OK_STEP, on_failure=True),
    ),
)
FLOWS = {f.name: f for f in (DIAMOND, ORDER)}
