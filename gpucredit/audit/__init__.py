"""The auditor's replay: every covenant, coupon and waterfall decision rebuilt from events.

- `export`: a deployment's events (over JSON-RPC) to JSON Lines and back;
- `model`: the independent reference model, written from the documented rules;
- `replay`: feeds the events to the model and lists every mismatch;
- `report`: Markdown and self-contained HTML with charts;
- `synthetic`: valid synthetic histories (benchmark, tests);
- `cli`: the `gpucredit audit` sub-app (`export`, `replay`).

See docs/audit.md.
"""
