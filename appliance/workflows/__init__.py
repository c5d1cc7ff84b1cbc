"""Workflows: named, versioned DAGs of steps, each step a task on a topic (docs/adr/0010).

model.py (the run and step lifecycles, stdlib only), templates.py (Jinja2's sandbox),
definitions.py (the checked definition), advancer.py (the loop that moves runs on).
"""
