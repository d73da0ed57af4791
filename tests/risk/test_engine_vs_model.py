"""The vectorised engine decides every period exactly as the audit model does.

Random paths (`gpucredit.risk.crosscheck.random_paths`) visit every covenant
event; each path is played through `gpucredit.audit.model` one close at a
time and compared with the engine's arrays, field by field, to the unit.
"""

import numpy as np
import pytest

from gpucredit.risk import engine
from gpucredit.risk.crosscheck import (
    ReferenceDeal,
    compare,
    engine_row,
    play_model,
    random_paths,
)

START = 1_800_000_000


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_engine_equals_audit_model_on_random_paths(seed):
    deal = ReferenceDeal(START).params(drawdown_at=START + 15 * 86_400)
    paths = random_paths(deal, 60, 14, seed)
    run = engine.run(deal, paths)
    seen = set()
    for i in range(60):
        rows = play_model(deal, paths, i)
        for p, row in enumerate(rows):
            diffs = compare(engine_row(run, i, p), row)
            assert not diffs, f"seed {seed} path {i} period {p}: {diffs}"
            assert int(run["status"][i, p]) == row["status"]
            seen.update(row["events"])
    # the paths exercise the whole event set
    events = ("TopUpRequired", "TopUpCured", "DefaultDeclared", "CouponStepped", "ReportMissed")
    assert set(events) <= seen, set(events) - seen
    assert run["stepped_in"].any() and run["sweep"].any() and run["equity"].any()
    assert (run["seniorPrincipal"] > 0).any() and (run["reserveDrawn"] > 0).any()


def test_engine_chunks_agree_with_one_run():
    deal = ReferenceDeal(START).params(drawdown_at=START + 15 * 86_400)
    paths = random_paths(deal, 40, 12, 9)
    whole = engine.run(deal, paths)
    part = engine.run(deal, paths.slice(10, 30))
    for name in ("breaches", "seniorInterest", "equity", "status"):
        assert np.array_equal(whole[name][10:30], part[name])


def test_engine_refuses_a_deal_too_large_to_be_exact():
    deal = ReferenceDeal(START).params(drawdown_at=START)
    from dataclasses import replace

    huge = replace(deal, senior=replace(deal.senior, original=10**16))
    with pytest.raises(ValueError, match="original"):
        engine.run(huge, random_paths(deal, 2, 3, 1))


def test_a_single_tranche_note_also_equals_the_model():
    from dataclasses import replace

    deal = ReferenceDeal(START).params(drawdown_at=START + 15 * 86_400)
    deal = replace(deal, junior=None)
    paths = random_paths(deal, 40, 14, 4)
    run = engine.run(deal, paths)
    assert not run["juniorInterest"].any() and not run["junior_rate"].any()
    for i in range(40):
        for p, row in enumerate(play_model(deal, paths, i)):
            diffs = compare(engine_row(run, i, p), row)
            assert not diffs, f"path {i} period {p}: {diffs}"
