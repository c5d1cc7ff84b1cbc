"""docs/OPERATIONS.md lists every metric atp defines, and the Grafana dashboard uses real ones."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import Counter, Gauge, Histogram

from appliance import metrics

ROOT = Path(__file__).resolve().parents[2]


def exported_names() -> set[str]:
    names = {"atp_queue_depth", "atp_queue_lag_seconds", "atp_topics"}  # the supervisor's, read
    for obj in vars(metrics).values():
        if isinstance(obj, Counter):
            names.add(obj._name + "_total")
        elif isinstance(obj, Gauge | Histogram):
            names.add(obj._name)
    return names


def test_operations_doc_lists_every_metric() -> None:
    doc = (ROOT / "docs" / "OPERATIONS.md").read_text()
    listed = set(re.findall(r"^\| `(atp_[a-z_]+)` \|", doc, re.MULTILINE))
    assert listed == exported_names()


def test_dashboard_queries_only_real_metrics() -> None:
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "atp.json").read_text())
    used = set(re.findall(r"atp_[a-z_]+", json.dumps(dashboard)))
    real = exported_names()
    real |= {n + s for n in real for s in ("_bucket", "_count", "_sum")}
    assert used and used <= real
