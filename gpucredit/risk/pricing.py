"""Pricing: spreads, minimum collateral ratio and step threshold that meet loss targets.

Targets are expected losses (share of principal over the life) per tranche,
plus a premium over expected loss. The search is on the scenario's paths with
common random numbers (one seed), so a step in a parameter moves the figures,
not the noise:

1. collateral: the smallest fleet (in GPUs, so revenue and collateral grow
   together) whose senior expected loss is at most the senior target; the
   term sheet's `min_collateral_ratio` is that fleet's cost over the
   principal, rounded up to whole percent;
2. step threshold: the step-up utilization level, among a few, with the
   lowest senior expected loss;
3. spreads: expected loss per year of weighted average life plus the
   premium, iterated twice (a higher coupon raises debt service).

The result is written as a term sheet `gpucredit issuer create-note` accepts
(validated with the same parser before it is written).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gpucredit.protocol import USD
from gpucredit.risk.analysis import run_note
from gpucredit.risk.scenario import Scenario
from gpucredit.risk.simulate import EPOCH, deal_params
from gpucredit.termsheet import TermSheet, termsheet_from_data

STEP_UP_LEVELS = (5_000, 5_500, 6_000, 6_500, 7_000)


@dataclass
class Targets:
    senior_el: float = 0.005
    junior_el: float = 0.05
    premium_bps: int = 150


def _with(data: dict[str, Any], **changes: Any) -> dict[str, Any]:
    d = copy.deepcopy(data)
    for i, spread in enumerate(changes.get("spreads") or []):
        d["tranches"][i]["spread"] = f"{spread}bps"
    if changes.get("ratio") is not None:
        for t in d["tranches"]:
            t["min_collateral_ratio"] = f"{changes['ratio']}%"
    if changes.get("step_up") is not None:
        d.setdefault("steps", {}).setdefault("up", {})
        d["steps"]["up"]["utilization_below"] = f"{changes['step_up'] / 100:g}%"
    return d


def _evaluate(data: dict[str, Any], s: Scenario, paths: int, seed: int, **kw: Any) -> dict:
    ts = termsheet_from_data(data)
    spec = ts.to_deal_spec(EPOCH)
    return run_note(deal_params(spec, s), s, paths, seed, **kw).as_dict()


def _wal_years(ts: TermSheet) -> list[float]:
    spec = ts.to_deal_spec(EPOCH)
    term = spec.term_seconds or spec.term_days * 86_400
    out = []
    for t in spec.tranches:
        if not t.amortization:
            out.append(term / (365 * 86_400))
            continue
        prev, wal = 0, 0.0
        for offset, cum in t.amortization:
            wal += (cum - prev) / 10_000 * offset
            prev = cum
        wal += (10_000 - prev) / 10_000 * term
        out.append(wal / (365 * 86_400))
    return out


def price(
    data: dict[str, Any], s: Scenario, targets: Targets, paths: int, seed: int = 1, **kw: Any
) -> dict[str, Any]:
    """Proposes spreads, a minimum collateral ratio and a step-up level; see the module doc."""
    base_ts = termsheet_from_data(data)
    principal = sum(t.size for t in base_ts.tranches)
    gpus = s.fleet.gpus.value
    cost = s.fleet.cost_per_gpu_usd.value * USD

    def els(scn: Scenario, d: dict[str, Any]) -> list[float]:
        return [t["el"] for t in _evaluate(d, scn, paths, seed, **kw)["tranches"]]

    def ok(scn: Scenario, d: dict[str, Any]) -> bool:
        e = els(scn, d)
        return e[0] <= targets.senior_el and (len(e) < 2 or e[1] <= targets.junior_el)

    wal = _wal_years(base_ts)
    spreads = [t.spread for t in base_ts.tranches]
    level: int | None = None
    fleet, feasible = gpus, False
    current = data
    result: dict[str, Any] = {}
    for _ in range(3):  # size the fleet, pick the step, price; again if a target slipped
        lo, hi = max(gpus // 4, 1), gpus
        while hi < gpus * 16 and not ok(s.with_value("fleet.gpus", hi), current):
            lo, hi = hi, hi * 2
        feasible = ok(s.with_value("fleet.gpus", hi), current)
        while feasible and hi - lo > max(gpus // 100, 1):
            mid = (lo + hi) // 2
            if ok(s.with_value("fleet.gpus", mid), current):
                hi = mid
            else:
                lo = mid
        fleet = hi
        sized = s.with_value("fleet.gpus", fleet)
        best_el = math.inf
        for candidate in STEP_UP_LEVELS:
            el = els(sized, _with(current, step_up=candidate))[0]
            if el < best_el - 1e-12:
                level, best_el = candidate, el
        ratio = math.ceil(fleet * cost * 100 / principal)
        current = _with(current, ratio=ratio, step_up=level)
        for _ in range(2):
            result = _evaluate(_with(current, spreads=spreads), sized, paths, seed, **kw)
            spreads = [
                max(1, math.ceil(t["el"] / max(w, 1e-9) * 10_000 + targets.premium_bps))
                for t, w in zip(result["tranches"], wal, strict=True)
            ]
        current = _with(current, spreads=spreads)
        if ok(sized, current):
            break
    final = current
    termsheet_from_data(final)  # what create-note will parse
    result = _evaluate(final, sized, paths, seed, **kw)
    met = [
        result["tranches"][0]["el"] <= targets.senior_el,
        len(result["tranches"]) < 2 or result["tranches"][1]["el"] <= targets.junior_el,
    ]
    ratio = math.ceil(fleet * cost * 100 / principal)
    best_level = level
    return {
        "termsheet": final,
        "fleet_gpus": fleet,
        "min_collateral_ratio_pct": ratio,
        "step_up_utilization_bps": best_level,
        "spreads_bps": spreads,
        "collateral_search_feasible": feasible,
        "targets": targets.__dict__,
        "targets_met": {"senior": met[0], "junior": met[1]},
        "result": result,
    }


def write_termsheet(data: dict[str, Any], path: Path, note: str) -> None:
    path.write_text(
        f"# Proposed by `gpucredit risk price` ({note}).\n"
        "# Check it with: gpucredit issuer validate "
        + str(path)
        + "\n"
        + yaml.safe_dump(data, sort_keys=False)
    )
