"""Risk engine benchmark: Monte Carlo paths of a two-tranche, 36-period note.

    python bench/risk.py [--scaling 10000,100000,300000,1000000] [--out bench/risk.json]

The note is `examples/termsheet.yaml` with a three-year term (36 monthly
periods; senior amortizing quarterly from month 6, junior bullet), under the
`base` scenario, with the full event set (coupon steps, top-ups and cures,
sweeps, equity blocks, defaults, step-ins, wind-down, recovery) and the
summary statistics of `gpucredit risk run` (loss, IRR, events, fan charts).
Runs on a process pool, one worker per core (`gpucredit risk run`'s default).

* ``risk_run_100k_s``: wall seconds for 100,000 paths (target <= 10 s);
* ``risk_paths_per_s``: 100,000 / that;
* ``peak_rss_mib``: the largest resident set of the parent or any worker
  (target < 2,048 MiB);
* ``scaling``: seconds and paths/s from 10,000 to 1,000,000 paths.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gpucredit.risk.analysis import default_workers, run_note  # noqa: E402
from gpucredit.risk.scenario import load_scenario  # noqa: E402
from gpucredit.risk.simulate import EPOCH, deal_params, horizon  # noqa: E402
from gpucredit.termsheet import termsheet_from_data  # noqa: E402

TARGET_S = 10.0
TARGET_MIB = 2_048


def note():
    data = yaml.safe_load((REPO / "examples/termsheet.yaml").read_text())
    data["term"] = "1080d"  # 36 periods of 30 days
    spec = termsheet_from_data(data).to_deal_spec(EPOCH)
    s = load_scenario("base")
    return deal_params(spec, s), s


def peak_rss_mib() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scaling", default="10000,100000,300000,1000000")
    ap.add_argument("--out", default=str(REPO / "bench/risk.json"))
    args = ap.parse_args()
    deal, s = note()
    term, periods = horizon(deal, s)
    run_note(deal, s, 2_000, seed=1)  # warm-up: imports, pool start
    scaling = []
    for n in [int(x) for x in args.scaling.split(",")]:
        t0 = time.perf_counter()
        r = run_note(deal, s, n, seed=1)
        dt = time.perf_counter() - t0
        scaling.append(
            {
                "paths": n,
                "seconds": round(dt, 3),
                "paths_per_s": round(n / dt),
                "senior_el": round(r.tranches[0].el, 6),
                "junior_el": round(r.tranches[1].el, 6),
            }
        )
        print(f"{n:>9,} paths  {dt:7.2f} s  {n / dt:>10,.0f} paths/s", flush=True)
    hundred = next((x for x in scaling if x["paths"] == 100_000), None)
    result = {
        "note": "examples/termsheet.yaml, term 1080d (two tranches)",
        "scenario": "base",
        "term_periods": term,
        "simulated_periods": periods,
        "workers": default_workers(),
        "cpu_count": os.cpu_count(),
        "risk_run_100k_s": hundred["seconds"] if hundred else None,
        "risk_paths_per_s": hundred["paths_per_s"] if hundred else None,
        "target_s": TARGET_S,
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "target_rss_mib": TARGET_MIB,
        "scaling": scaling,
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "scaling"}, indent=2))


if __name__ == "__main__":
    main()
