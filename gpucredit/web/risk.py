"""The risk engine's figures for an indexed note, from its on-chain terms.

`gpucredit risk run` prices a term sheet (`gpucredit.risk.analysis.run_note`
on `gpucredit.risk.simulate.deal_params`). Here the same engine gets the note
as the chain has it, read off the replayed history (`gpucredit.audit.replay`):
the covenant terms the servicer was created with, each tranche's terms, drawn
principal and amortisation schedule, the oracle fleet's genesis, period length
and heartbeat, and the pledged batches (cost, in-service date, the registry's
depreciation class of their model). The scenario (`base` by default) supplies
what the chain does not know: rents, utilisation, GPU prices, recoveries; its
fleet size and cost per GPU are replaced by the pledged batches'.

The figures are ex ante: paths from the note's first period to maturity, not
conditioned on the periods closed since. A modest path count (`RISK_PATHS`)
keeps the page quick; the result is cached per note and indexed history, and
labelled with the scenario, the path count and the seed.
"""

from __future__ import annotations

from typing import Any

from gpucredit.audit.model import BATCH_PLEDGED
from gpucredit.risk.engine import BatchParams, DealParams, TrancheParams

RISK_SCENARIO = "base"
RISK_PATHS = 2_000
RISK_SEED = 1
USD = 10**6


def _servicer(replayer: Any, note_id: int) -> Any:
    for servicer in replayer.servicers.values():
        if servicer.note_id == note_id:
            return servicer
    return None


def _tranche(t: Any, drawdown_at: int) -> TrancheParams:
    terms = t.terms
    return TrancheParams(
        original=t.original or terms.max_size,
        reference_rate_bps=terms.reference_rate_bps,
        spread_bps=terms.spread_bps,
        floor_rate_bps=terms.floor_rate_bps,
        cap_rate_bps=terms.cap_rate_bps,
        maturity=terms.maturity,
        schedule=tuple((int(due), int(bps)) for due, bps in t.schedule),
        drawdown_at=drawdown_at,
    )


def note_deal(replayer: Any, note_id: int) -> tuple[DealParams, dict[str, Any]] | None:
    """(the engine's deal, the on-chain fleet: gpus, cost, class) of a note, or None."""
    servicer = _servicer(replayer, note_id)
    if servicer is None or servicer.senior is None:
        return None
    fleet = next(
        (
            f
            for f in replayer.oracle.fleets.values()
            if str(f.consumer).lower() == servicer.address.lower()
        ),
        None,
    )
    registry = replayer.registry
    pledged = [
        b for b in registry.batches.values() if b.note_id == note_id and b.status == BATCH_PLEDGED
    ]
    if fleet is None or not pledged:
        return None
    batches = []
    class_ids = []
    for b in pledged:
        class_id, _haircut = registry.models.get(b.model, (0, 0))
        markdown, floor = registry.classes.get(class_id, (0, 0))
        batches.append(BatchParams(b.total_cost, markdown, floor, b.in_service_at))
        class_ids.append(class_id)
    # accrual starts at drawdown, before the fleet's genesis; the term sheet engine's
    # convention (simulate.deal_params) is a day before it
    drawdown_at = fleet.genesis - 86_400
    deal = DealParams(
        covenants=servicer.terms,
        senior=_tranche(servicer.senior, drawdown_at),
        junior=_tranche(servicer.junior, drawdown_at) if servicer.junior is not None else None,
        batches=tuple(batches),
        genesis=fleet.genesis,
        period_length=fleet.period_length,
        heartbeat=fleet.heartbeat,
        drawdown_at=drawdown_at,
    )
    gpus = sum(b.count for b in pledged)
    cost = sum(b.total_cost for b in pledged)
    return deal, {"gpus": gpus, "cost": cost, "class_id": max(set(class_ids), key=class_ids.count)}


def note_risk(
    replayer: Any,
    note_id: int,
    scenario: str = RISK_SCENARIO,
    paths: int = RISK_PATHS,
    seed: int = RISK_SEED,
) -> dict[str, Any] | None:
    """PD, LGD, EL and 99 % VaR per tranche, and the event-of-default probability."""
    from gpucredit.risk.analysis import run_note
    from gpucredit.risk.scenario import PFloat, PInt, load_scenario

    found = note_deal(replayer, note_id)
    if found is None:
        return None
    deal, fleet = found
    s = load_scenario(scenario)
    if fleet["gpus"]:
        source = "the note's pledged batches on chain"
        s = s.model_copy(
            update={
                "fleet": s.fleet.model_copy(
                    update={
                        "gpus": PInt(value=fleet["gpus"], source=source),
                        "cost_per_gpu_usd": PFloat(
                            value=fleet["cost"] / fleet["gpus"] / USD, source=source
                        ),
                        "depreciation_class": PInt(value=fleet["class_id"], source=source),
                    }
                )
            }
        )
    r = run_note(deal, s, paths, seed).as_dict()
    return {
        "scenario": r["scenario"],
        "paths": r["paths"],
        "seed": seed,
        "term_periods": r["term_periods"],
        "pd_event_of_default": r["pd_event_of_default"],
        "basis": "ex ante: paths from the first period to maturity on the on-chain terms",
        "fleet": fleet,
        "tranches": [
            {
                "name": t["name"],
                "pd": t["pd"],
                "lgd": t["lgd"],
                "el": t["el"],
                "var99": t["var99"],
                "irr_p50": t["irr_p50"],
            }
            for t in r["tranches"]
        ],
    }
