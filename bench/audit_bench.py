"""Audit replay benchmark: events replayed per second from a JSON Lines export.

    python bench/audit_bench.py [--events 100000] [--runs 3] [--out bench/audit.json]

Generates a synthetic but valid history of exactly `--events` events
(gpucredit.audit.synthetic: 24 notes on one registry and oracle over three
years of 30-day periods, with subscriptions, revenue, holder transfers,
coupon claims, reports on time, late and missed, coupon steps, top-ups, cures,
defaults, step-ins, repayment and redemptions), writes it to a temporary
JSON Lines file, then times `read_jsonl` + `replay` end to end (parsing the
file included), best of `--runs`. Every run must find zero mismatches.

* ``replay_events_per_s``: events / (parse + replay seconds), best run
  (target >= 20,000 on 2 cores);
* ``parse_s``, ``replay_s``: the two parts of that run;
* ``events``, ``closes``, ``fields_checked``, ``file_mb``: what was replayed.

Writes the figures to ``bench/audit.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gpucredit.audit.export import read_jsonl, write_jsonl  # noqa: E402
from gpucredit.audit.replay import replay  # noqa: E402
from gpucredit.audit.synthetic import synthetic_history  # noqa: E402

TARGET = 20_000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="events in the file")
    parser.add_argument("--runs", type=int, default=3, help="timed replays (best is kept)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the synthetic history")
    parser.add_argument(
        "--out", type=Path, default=REPO / "bench" / "audit.json", help="JSON results file"
    )
    args = parser.parse_args()

    started = time.perf_counter()
    history = synthetic_history(args.events, seed=args.seed)
    generated = time.perf_counter() - started
    with tempfile.TemporaryDirectory(prefix="gpucredit-audit-bench-") as folder:
        path = Path(folder) / "events.jsonl"
        write_jsonl(history, path)
        size = path.stat().st_size
        best = None
        for _ in range(args.runs):
            t0 = time.perf_counter()
            loaded = read_jsonl(path)
            t1 = time.perf_counter()
            result = replay(loaded)
            t2 = time.perf_counter()
            if result.mismatches:
                print(f"{len(result.mismatches)} mismatches: {result.mismatches[0].describe()}")
                return 1
            if best is None or t2 - t0 < best[0] + best[1]:
                best = (t1 - t0, t2 - t1, result)
    assert best is not None
    parse_s, replay_s, result = best
    figures = {
        "replay_events_per_s": round(result.events / (parse_s + replay_s), 1),
        "parse_s": round(parse_s, 3),
        "replay_s": round(replay_s, 3),
        "events": result.events,
        "transactions": result.transactions,
        "closes": result.closes,
        "fields_checked": result.fields_checked,
        "file_mb": round(size / 1e6, 1),
        "generate_s": round(generated, 1),
        "cpus": os.cpu_count(),
    }
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"{'metric':<24} {'value':>14}")
    for key, value in figures.items():
        shown = f"{value:,.3f}" if key.endswith("_s") else f"{value:,}"
        print(f"{key:<24} {shown:>14}")
    ok = figures["replay_events_per_s"] >= TARGET
    print(f"target: replay_events_per_s >= {TARGET:,}: {'ok' if ok else 'MISSED'}")
    print(f"written to {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
