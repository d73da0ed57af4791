"""Engine paths played through the real contracts decide identically, to the unit.

22 paths of `gpucredit.risk.crosscheck.random_paths` (6 of them in `make test`) (the seed deal: 14M
senior amortizing in thirds, 3M junior bullet, $25M of class-1 GPUs), picked
so that defaults, step-ins, cures, missed and late reports, haircut cuts,
sweeps and amortization all occur, are each played on a fresh note: the
operator pays the period's revenue and posts cash collateral, the registry's
valuation role cuts the model haircut, three signers sign the report (or it is
missed, or late), the close is sent at the engine's close time, and the
trustee steps in when the path says so. Every period's `PeriodClosed` result,
`WaterfallDistributed` result, remedy events and servicer status must equal
the engine's arrays.
"""

import os
from dataclasses import replace

import numpy as np
import pytest
from brownie import accounts, chain, web3

from gpucredit.merkle import text_id
from gpucredit.protocol import (
    DAY,
    USD,
    DealSpec,
    TrancheSpec,
    close_subscription,
    make_fleet,
    open_deal,
    pledge_fleet,
    sign_report,
    wait_for_period_end,
    whitelist,
)
from gpucredit.reports import period_bounds
from gpucredit.risk import engine
from gpucredit.risk.crosscheck import ReferenceDeal, compare, engine_row, random_paths

PERIODS = 12
TEMPLATE_START = 1_800_000_000
TEMPLATE = ReferenceDeal(TEMPLATE_START).params(drawdown_at=TEMPLATE_START + 15 * DAY)
CANDIDATES = random_paths(TEMPLATE, 300, PERIODS, seed=20261206)


def _pick_paths(count: int = 22) -> list[int]:
    """Paths covering the event set: step-ins, defaults without, cures, then the rest."""
    run = engine.run(TEMPLATE, CANDIDATES)
    stepped = np.flatnonzero(run["stepped_in"].any(axis=1))
    defaulted = np.flatnonzero(run["defaulted"].any(axis=1) & ~run["stepped_in"].any(axis=1))
    cured = np.flatnonzero(run["cured"].any(axis=1))
    late = np.flatnonzero(CANDIDATES.late.any(axis=1))
    picked: list[int] = []
    for group, take in ((stepped, 6), (defaulted, 3), (cured, 4), (late, 2)):
        picked += [int(i) for i in group if i not in picked][:take]
    picked += [i for i in range(300) if i not in picked][: count - len(picked)]
    return picked


# `make test` plays the first path of each event group picked above and one more
# step-in (step-ins 0 and 3, default 6, cure 9, late 13, other 15); `make fuzz`
# plays all 22 (GPUCREDIT_CROSSCHECK_ALL=1).
CI_SLOTS = (0, 3, 6, 9, 13, 15)
PICKED = [
    p
    for slot, p in enumerate(_pick_paths())
    if os.environ.get("GPUCREDIT_CROSSCHECK_ALL") or slot in CI_SLOTS
]
SEEN: dict[str, int] = {}


@pytest.fixture(scope="module")
def setup(core, admin):
    core.oracle.grantRole(core.oracle.FLEET_ADMIN_ROLE(), admin, {"from": admin})
    return core


def _spec() -> DealSpec:
    return DealSpec(
        tranches=[
            TrancheSpec(
                "Risk Senior",
                "RSK-A",
                0,
                14_000_000 * USD,
                spread_bps=450,
                amortization=[(180 * DAY, 3_334), (270 * DAY, 6_667)],
            ),
            TrancheSpec("Risk Junior", "RSK-B", 1, 3_000_000 * USD, spread_bps=900),
        ],
        subscription_days=14,
        term_days=360,
        quorum=3,
    )


def _set_next_timestamp(ts: int) -> None:
    assert chain[-1].timestamp < ts, (chain[-1].timestamp, ts)
    web3.provider.make_request("evm_setNextBlockTimestamp", [int(ts)])


@pytest.mark.parametrize("slot", range(len(PICKED)))
def test_engine_path_on_the_contracts(
    setup, slot, admin, issuer, operator, attestor, trustee, lenders, spv, signers, signer_keys
):
    core = setup
    i = PICKED[slot]
    lender = lenders[0]
    whitelist(core, admin, [lender])  # each path moves the clock about a year
    start = chain[-1].timestamp
    deal = open_deal(
        core,
        _spec(),
        admin=admin,
        issuer=issuer,
        operator=operator,
        trustee=trustee,
        fee_recipient=spv,
        signers=signers[:4],
        start=start,
    )
    model_id = text_id(f"risk-path-{slot}")  # its own model: haircut cuts stay on this path
    core.registry.setModel(model_id, 1, 0, {"from": admin})  # a new model waits its timelock
    chain.sleep(2 * DAY + 1)
    chain.mine()
    core.registry.executeModel(model_id, {"from": admin})
    in_service = start - 1
    fleet = make_fleet(
        10,
        cost=2_500_000 * USD,
        in_service_at=in_service,
        model=model_id,
        serial_prefix=f"RISK{slot}-",
    )
    pledge_fleet(core, deal, fleet, issuer, operator, attestor)
    core.usd.mint(lender, 17_000_000 * USD, {"from": admin})
    core.usd.mint(operator, 200_000_000 * USD, {"from": admin})
    drawn = []
    for tranche, amount in ((deal.senior, 14_000_000 * USD), (deal.junior, 3_000_000 * USD)):
        core.usd.approve(tranche, amount, {"from": lender})
        tranche.requestDeposit(amount, lender, lender, {"from": lender})
    for tranche in (deal.senior, deal.junior):  # both windows close at their end
        close_subscription(tranche, issuer)
        tranche.fulfil([lender], {"from": issuer})
        drawn.append(tranche.drawdown({"from": issuer}).timestamp)
        tranche.claimShares({"from": lender})
    core.usd.approve(deal.servicer, 2**256 - 1, {"from": operator})

    params = ReferenceDeal(start).params(drawdown_at=drawn[0], in_service_at=in_service)
    assert params.genesis == deal.genesis
    params = replace(
        params,
        senior=replace(params.senior, drawdown_at=drawn[0]),
        junior=replace(params.junior, drawdown_at=drawn[1]),
    )
    path = CANDIDATES.slice(i, i + 1)
    path.close_ts = path.close_ts + (params.genesis - TEMPLATE.genesis)
    run = engine.run(params, path)

    haircut = 0
    for p in range(PERIODS):
        if int(path.haircut_bps[0, p]) != haircut:
            haircut = int(path.haircut_bps[0, p])  # a cut applies at once
            core.registry.setModel(model_id, 1, haircut, {"from": admin})
        revenue = int(path.revenue_cash[0, p])
        if revenue:
            deal.servicer.payRevenue(revenue, {"from": operator})
        posted = int(path.cash_posted[0, p])
        if posted:
            deal.servicer.postCashCollateral(posted, {"from": operator})
        if path.reported[0, p]:
            wait_for_period_end(deal, p)
            if path.late[0, p]:
                _, end = period_bounds(deal.genesis, deal.spec.period_length, p)
                chain.sleep(end + deal.spec.heartbeat - chain[-1].timestamp + 1)
                chain.mine()
            observations = sign_report(
                core,
                deal,
                p,
                signer_keys[:3],
                utilization=int(path.utilization[0, p]),
                uptime=int(path.uptime[0, p]),
                revenue=int(path.revenue_reported[0, p]),
            )
            core.oracle.submitReport(deal.note_id, p, observations, {"from": accounts[9]})
        close_ts = int(path.close_ts[0, p])
        _set_next_timestamp(close_ts)
        tx = deal.servicer.closePeriod({"from": accounts[9]})
        assert tx.timestamp == close_ts

        closed = tx.events["PeriodClosed"]
        got = dict(closed["result"])
        got["waterfall"] = dict(tx.events["WaterfallDistributed"]["result"])
        want = engine_row(run, 0, p)
        diffs = compare(want, got)
        for event, field in (
            ("TopUpCured", "cured"),
            ("DefaultDeclared", "defaulted"),
            ("TopUpRequired", "topup_new"),
        ):
            if (event in tx.events) != bool(run[field][0, p]):
                diffs.append(f"{event}: contract {event in tx.events}, engine {run[field][0, p]}")
            SEEN[event] = SEEN.get(event, 0) + (event in tx.events)
        for name in ("ReportMissed", "CouponStepped"):
            SEEN[name] = SEEN.get(name, 0) + (name in tx.events)
        SEEN["late"] = SEEN.get("late", 0) + bool(closed["inputs"]["reportLate"])
        SEEN["sweep"] = SEEN.get("sweep", 0) + (got["waterfall"]["sweep"] > 0)
        assert int(deal.senior.principalOutstanding()) == int(run["senior_outstanding"][0, p])
        assert int(deal.junior.principalOutstanding()) == int(run["junior_outstanding"][0, p])

        if path.step_in[0, p] and deal.servicer.status() == 1:
            deal.servicer.stepIn({"from": trustee})
            SEEN["SteppedIn"] = SEEN.get("SteppedIn", 0) + 1
        assert int(deal.servicer.status()) == int(run["status"][0, p])
        assert not diffs, f"path {i} period {p}: {diffs}"


def test_the_paths_covered_every_event():
    """Runs after the paths (file order): defaults, step-ins, cures and the rest all occurred."""
    for event in (
        "DefaultDeclared",
        "SteppedIn",
        "TopUpCured",
        "TopUpRequired",
        "ReportMissed",
        "CouponStepped",
        "late",
        "sweep",
    ):
        assert SEEN.get(event, 0) > 0, (event, SEEN)
