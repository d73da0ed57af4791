"""Stress: named scenarios side by side, a tornado of drivers, break-even figures."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from gpucredit.protocol import DealSpec
from gpucredit.risk.analysis import run_note
from gpucredit.risk.scenario import NAMED, Scenario, load_scenario
from gpucredit.risk.simulate import deal_params

# (parameter, low, high): the driver's plausible range (docs/risk.md)
DRIVERS = (
    ("rent.drift_per_year", -0.20, -0.40),
    ("rent.vol_per_year", 0.10, 0.30),
    ("generation.launch_probability", 0.02, 0.12),
    ("recovery.fire_sale_discount", 0.15, 0.45),
    ("recovery.refinancing_advance", 0.80, 0.40),
    ("operator.cure_liquidity_usd", 8_000_000.0, 1_000_000.0),
    ("contracts.take_or_pay_share", 0.75, 0.25),
    ("fleet.opex_share", 0.25, 0.45),
)


def compare_scenarios(
    spec: DealSpec, names: tuple[str, ...], paths: int, seed: int, **kw: Any
) -> dict[str, Any]:
    out = {}
    for name in names:
        s = load_scenario(name)
        out[s.name] = run_note(deal_params(spec, s), s, paths, seed, **kw).as_dict()
    return out


def tornado(spec: DealSpec, base: Scenario, paths: int, seed: int, **kw: Any) -> dict[str, Any]:
    """Expected loss of each tranche with each driver at its low and high value."""
    ref = run_note(deal_params(spec, base), base, paths, seed, **kw).as_dict()
    rows = []
    for dotted, low, high in DRIVERS:
        els = []
        for value in (low, high):
            s = base.with_value(dotted, value)
            r = run_note(deal_params(spec, s), s, paths, seed, **kw).as_dict()
            els.append([t["el"] for t in r["tranches"]])
        rows.append(
            {"driver": dotted, "low": low, "high": high, "el_low": els[0], "el_high": els[1]}
        )
    return {"base_el": [t["el"] for t in ref["tranches"]], "drivers": rows}


def deterministic(s: Scenario) -> Scenario:
    """The scenario's central path: no volatility, no shocks, no incidents, no outages."""
    for dotted, value in (
        ("rent.vol_per_year", 0.0),
        ("utilization.sd", [0.0, 0.0, 0.0]),
        ("utilization.transition", [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]),
        ("uptime.incident_probability", 0.0),
        ("generation.launch_probability", 0.0),
        ("oracle.missed_report_probability", 0.0),
        ("btc.vol_per_year", 0.0),
    ):
        s = s.with_value(dotted, value)
    return s


def _first_loss(spec: DealSpec, s: Scenario) -> list[float]:
    r = run_note(deal_params(spec, s), s, 1, 1, workers=1).as_dict()
    return [t["el"] for t in r["tranches"]]


def break_even(
    spec: DealSpec, base: Scenario, steps: int = 14
) -> dict[str, list[dict[str, float | str]]]:
    """Per tranche: the rent drift and the utilization at which it takes its first loss.

    On the scenario's central path (`deterministic`), by bisection. A tranche
    that loses even at the mild end, or never at the harsh end, says so.
    """
    central = deterministic(base)
    n = len(spec.tranches)

    def rent(d: float) -> Scenario:
        return central.with_value("rent.drift_per_year", d)

    def util(u: float) -> Scenario:
        s = central.with_value("utilization.mean", [u, u, u])
        return s.with_value("contracts.take_or_pay_share", 0.0)

    out: dict[str, list[dict[str, float | str]]] = {"rent_drift_per_year": [], "utilization": []}
    for key, make, mild, harsh in (
        ("rent_drift_per_year", rent, 0.20, -0.95),
        ("utilization", util, 1.0, 0.0),
    ):
        for k in range(n):
            if _first_loss(spec, make(mild))[k] > 0:
                out[key].append({"tranche": k, "value": mild, "note": "loses even at the mild end"})
                continue
            if _first_loss(spec, make(harsh))[k] == 0:
                out[key].append({"tranche": k, "value": harsh, "note": "no loss at the harsh end"})
                continue
            safe, bad = mild, harsh
            for _ in range(steps):
                mid = (safe + bad) / 2
                if _first_loss(spec, make(mid))[k] > 0:
                    bad = mid
                else:
                    safe = mid
            out[key].append({"tranche": k, "value": bad, "note": "first loss"})
    return out


def named() -> tuple[str, ...]:
    return NAMED


__all__ = [
    "DRIVERS",
    "break_even",
    "compare_scenarios",
    "deterministic",
    "named",
    "replace",
    "tornado",
]
