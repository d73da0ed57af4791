"""Issue 6 without a chain: the reference model's rules on hand-computed cases, the JSON
Lines format and codec, the replay's mismatch reporting, the report and the CLI.

The model's agreement with the contracts is proven on a chain by
tests/integration/test_audit_replay.py; here each rule of the README is checked
on numbers worked out by hand, and the replay's bookkeeping (order, duplicates,
missing and extra events, unknown addresses) on a synthetic history.

Run: python -m pytest -p no:pytest-brownie tests/service/test_audit_model.py
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from eth_abi import encode as abi_encode
from harness import ensure_artifacts
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from gpucredit.audit import model as m
from gpucredit.audit.cli import app as audit_app
from gpucredit.audit.errors import AuditInputError
from gpucredit.audit.export import (
    AbiBook,
    Manifest,
    decode_logs,
    fetch_logs,
    header_seed,
    line_hash,
    parse_lines,
    read_jsonl,
    seal,
    write_jsonl,
)
from gpucredit.audit.replay import replay
from gpucredit.audit.report import write_report
from gpucredit.audit.synthetic import synthetic_history
from gpucredit.deployment import GpucreditError
from gpucredit.protocol import CovenantSpec

USD = 10**6
DAY = 86_400
PERIOD = 30 * DAY
YEAR = 365 * DAY
G = 1_800_000_000  # genesis
ISSUER = "0x" + "11" * 20
SERVICER = "0x" + "22" * 20
SENIOR = "0x" + "33" * 20
JUNIOR = "0x" + "44" * 20
ORACLE = "0x" + "55" * 20
A = "0x" + "aa" * 20
B = "0x" + "bb" * 20


# ---------------------------------------------------------------------------
# Collateral valuation
# ---------------------------------------------------------------------------


def test_depreciation_curve_markdown_floor_and_quarters():
    assert m.depreciation_factor_bps(500, 0, 0) == 10_000
    assert m.depreciation_factor_bps(500, 0, 3) == 8_500
    assert m.depreciation_factor_bps(1_667, 0, 6) == 0  # 18-month life: nothing left
    assert m.depreciation_factor_bps(1_667, 1_000, 5) == 1_665
    assert m.depreciation_factor_bps(1_667, 1_000, 6) == 1_000  # floor
    assert m.depreciation_factor_bps(0, 0, 99) == 10_000
    start = 1_000_000
    assert m.quarters_elapsed(start, start - 5) == 0
    assert m.quarters_elapsed(start, start + m.QUARTER - 1) == 0
    assert m.quarters_elapsed(start, start + m.QUARTER) == 1


def _registry(cost=25_000_000 * USD, markdown=500, in_service=G - 1):
    registry = m.Registry()
    registry.classes[1] = (markdown, 0)
    registry.models["0xh100"] = (1, 0)
    registry.notes[1] = m.NoteCollateral(1, ISSUER, SERVICER, batch_ids=[1])
    registry.batches[1] = m.Batch(
        1,
        ISSUER,
        ISSUER,
        1_000,
        cost,
        "0xh100",
        in_service,
        status=m.BATCH_PLEDGED,
        attested_at=in_service - m.CHALLENGE_WINDOW,
        note_id=1,
    )
    return registry


def test_collateral_value_haircut_void_and_note_status():
    registry = _registry()
    registry.models["0xh100"] = (1, 1_500)
    two_quarters = G - 1 + 2 * m.QUARTER
    # 25M x 90 % (two quarters at 5 %) x 85 % (haircut), rounded down
    assert registry.collateral_value(1, two_quarters) == 19_125_000 * USD
    registry.notes[1].status = m.NOTE_STEPPED_IN  # liens with the trustee: still collateral
    assert registry.collateral_value(1, two_quarters) == 19_125_000 * USD
    registry.notes[1].status = m.NOTE_RELEASED
    assert registry.collateral_value(1, two_quarters) == 0
    registry.notes[1].status = m.NOTE_OPEN
    registry.batches[1].status = m.BATCH_VOIDED
    assert registry.collateral_value(1, two_quarters) == 0
    # a batch counts only once its challenge window has passed
    registry.batches[1].status = m.BATCH_PLEDGED
    registry.batches[1].attested_at = two_quarters - m.CHALLENGE_WINDOW + 1
    assert registry.collateral_value(1, two_quarters) == 0
    assert registry.collateral_value(1, two_quarters + 1) > 0


def test_batch_value_rounds_down():
    registry = _registry(cost=999, markdown=333)
    assert registry.batch_value(registry.batches[1], G - 1 + m.QUARTER) == 999 * 9_667 // 10_000


# ---------------------------------------------------------------------------
# Waterfall
# ---------------------------------------------------------------------------


def _due(**kw):
    base = dict(
        cash_in=1_000,
        reserve_balance=100,
        reserve_target=400,
        fees=50,
        senior_interest=200,
        junior_interest=100,
        senior_principal=150,
        junior_principal=50,
        senior_outstanding=10_000,
        junior_outstanding=2_000,
        sweep_share_bps=5_000,
        sweep_on=True,
        equity_blocked=False,
    )
    base.update(kw)
    return m.Due(**base)


def test_waterfall_performing_fills_every_bucket_in_order():
    # 1,000 - fees 50 - senior 200 - junior 100 - principal 150 + 50 = 450;
    # reserve 100 -> target 400 takes 300; sweep half of 150 = 75; equity 75
    assert m.waterfall(_due()) == {
        "cashIn": 1_000,
        "fees": 50,
        "seniorInterest": 200,
        "juniorInterest": 100,
        "seniorPrincipal": 150,
        "juniorPrincipal": 50,
        "reserveDrawn": 0,
        "reserveAdded": 300,
        "sweep": 75,
        "equity": 75,
        "trapped": 0,
        "reserveBalance": 400,
    }
    blocked = m.waterfall(_due(equity_blocked=True))
    assert (blocked["equity"], blocked["trapped"]) == (0, 75)
    assert m.waterfall(_due(cash_in=1_001))["sweep"] == 75  # 151 / 2 rounds down
    assert m.waterfall(_due(sweep_on=False))["equity"] == 150


def test_waterfall_interest_shortfall_draws_the_reserve_senior_first():
    w = m.waterfall(_due(cash_in=120))
    # fees 50, then 70 of senior interest from cash and 100 from the reserve
    assert (w["fees"], w["seniorInterest"], w["juniorInterest"]) == (50, 170, 0)
    assert (w["reserveDrawn"], w["reserveAdded"], w["reserveBalance"]) == (100, 0, 0)
    assert w["seniorPrincipal"] == w["equity"] == w["sweep"] == 0


def test_waterfall_sweep_never_exceeds_the_senior_principal_left():
    w = m.waterfall(_due(cash_in=100_000, senior_outstanding=200))
    assert w["seniorPrincipal"] + w["sweep"] == 200


def test_wind_down_pays_senior_principal_before_junior_interest():
    short = m.waterfall(
        _due(
            cash_in=1_000,
            reserve_balance=0,
            senior_interest=100,
            junior_interest=100,
            senior_outstanding=600,
            junior_outstanding=500,
            wind_down=True,
        )
    )
    # 1,000 - 50 - 100 - 600 (senior principal) - 100 (junior interest) = 150 of junior principal
    assert (short["seniorPrincipal"], short["juniorInterest"], short["juniorPrincipal"]) == (
        600,
        100,
        150,
    )
    assert short["equity"] == short["trapped"] == 0
    repaid = m.waterfall(
        _due(
            cash_in=2_000,
            reserve_balance=0,
            senior_interest=100,
            junior_interest=100,
            senior_outstanding=600,
            junior_outstanding=500,
            wind_down=True,
        )
    )
    assert (repaid["juniorPrincipal"], repaid["equity"], repaid["reserveAdded"]) == (500, 650, 0)


@given(
    cash=st.integers(0, 10**13),
    reserve=st.integers(0, 10**12),
    target=st.integers(0, 10**12),
    fees=st.integers(0, 10**10),
    si=st.integers(0, 10**12),
    ji=st.integers(0, 10**12),
    sp=st.integers(0, 10**12),
    jp=st.integers(0, 10**12),
    extra=st.integers(0, 10**13),
    share=st.integers(0, 10_000),
    flags=st.tuples(st.booleans(), st.booleans(), st.booleans()),
)
@settings(max_examples=300, deadline=None)
def test_waterfall_conserves_cash(cash, reserve, target, fees, si, ji, sp, jp, extra, share, flags):
    d = m.Due(cash, reserve, target, fees, si, ji, sp, jp, sp + extra, jp + extra, share, *flags)
    w = m.waterfall(d)
    out = sum(
        w[k]
        for k in (
            "fees",
            "seniorInterest",
            "juniorInterest",
            "seniorPrincipal",
            "juniorPrincipal",
            "reserveAdded",
            "sweep",
            "equity",
            "trapped",
        )
    )
    assert out == cash + w["reserveDrawn"]
    assert w["reserveBalance"] == reserve - w["reserveDrawn"] + w["reserveAdded"]
    assert w["fees"] <= fees and w["seniorInterest"] <= si and w["juniorInterest"] <= ji
    assert w["seniorPrincipal"] + w["sweep"] <= d.senior_outstanding
    assert w["equity"] == 0 or w["trapped"] == 0


def test_dscr_rounds_down_ltv_rounds_up():
    assert m.dscr_bps(1_000, 900, 700) == 12_857  # min(oracle, cash) / debt service
    assert m.dscr_bps(5, 5, 0) == m.UINT32_MAX
    assert m.ltv_bps(17, 25) == 6_800
    assert m.ltv_bps(1, 3) == 3_334
    assert m.ltv_bps(0, 0) == 0
    assert m.ltv_bps(5, 0) == m.UINT32_MAX


# ---------------------------------------------------------------------------
# Covenants, coupon steps, remedies: one note on model objects
# ---------------------------------------------------------------------------

TERMS = m.CovenantTerms(*CovenantSpec().as_tuple())  # the seed terms


def _tranche(address, size, spread, seniority, ref=430, floor=500, cap=2_500):
    terms = m.TrancheTerms(
        1,
        seniority,
        size,
        1_000 * USD,
        G - 14 * DAY,
        G,
        G + 10 * YEAR,
        ref,
        spread,
        floor,
        cap,
        13_000,
    )
    t = m.Tranche(address, terms)
    t.state = m.ACTIVE
    t.last_accrual_at = G
    t.outstanding = t.original = size
    t.move(G, m.ZERO_ADDRESS, A, size)
    return t


class Note:
    """A drawn note (senior 14M at 8.80 %, junior 3M at 13.30 %) on 25M of GPUs."""

    def __init__(self, terms=TERMS, markdown=0):
        self.registry = _registry(markdown=markdown)
        self.oracle = m.Oracle()
        self.fleet = m.Fleet(1, ISSUER, SERVICER, G, PERIOD, 7 * DAY, quorum=3)
        self.oracle.fleets[1] = self.fleet
        self.senior = _tranche(SENIOR, 14_000_000 * USD, 450, 0)
        self.junior = _tranche(JUNIOR, 3_000_000 * USD, 900, 1)
        self.s = m.Servicer(SERVICER, 1, terms, self.senior, self.junior)
        self.period = 0

    def close(self, utilization, *, revenue=1_200_000 * USD, uptime=9_950, report="on time"):
        end = G + (self.period + 1) * PERIOD
        stale = end + self.fleet.heartbeat
        ts = end + 1 if report == "on time" else stale + 1
        self.s.period_revenue = revenue
        if report != "missed":
            self.fleet.reports[self.period] = m.Report(
                m.REPORTED, utilization, uptime, revenue, ts, 3
            )
            self.fleet.next_period = self.period + 1
        outcome = self.s.close(ts, self.registry, self.oracle, ORACLE)
        assert outcome.problem is None
        self.period += 1
        self.ts = ts
        return {name: args for _, name, args in outcome.events}, [n for _, n, _ in outcome.events]


def test_step_down_after_three_high_periods_and_removed_at_the_first_low():
    note = Note()
    for _ in range(2):
        events, names = note.close(9_200)
        assert "CouponStepped" not in names and events["PeriodClosed"]["result"]["newStepBps"] == 0
    events, names = note.close(9_200)
    assert names[-5:] == ["RateChanged", "RateChanged", "CouponStepped", "Paid", "Paid"]
    stepped = events["CouponStepped"]
    assert (stepped["oldStepBps"], stepped["newStepBps"]) == (0, -200)
    assert (stepped["seniorRateBps"], stepped["juniorRateBps"]) == (680, 1_130)
    events, _ = note.close(8_900)  # below 90 %: the step-down goes at once
    assert events["PeriodClosed"]["result"]["highStreak"] == 0
    assert events["CouponStepped"]["newStepBps"] == 0
    assert note.senior.rate == 880


def test_low_utilization_steps_up_tightens_ltv_and_requires_a_top_up():
    note = Note()
    events, names = note.close(5_500)
    result = events["PeriodClosed"]["result"]
    assert (result["newStepBps"], result["ltvLimitBps"], result["ltvBps"]) == (300, 6_500, 6_800)
    required = -(-17_000_000 * USD * 10_000 // 6_500)  # ceil(outstanding / 65 %)
    assert events["TopUpRequired"] == {
        "period": 0,
        "requiredCollateral": required,
        "shortfall": required - 25_000_000 * USD,
        "deadline": note.ts + 30 * DAY,
    }
    assert names.index("TopUpRequired") < names.index("PeriodClosed")
    assert m.breach_names(result["breaches"]) == ["LTV", "low-util", "top-up open"]
    assert result["sweepOn"] and result["equityBlocked"]
    assert events["WaterfallDistributed"]["result"]["sweep"] > 0


def test_step_up_is_kept_while_the_top_up_is_open_and_removed_once_cured():
    note = Note()
    note.close(5_500)
    events, _ = note.close(7_000)  # utilization back, top-up still open
    assert events["PeriodClosed"]["result"]["newStepBps"] == 300
    assert "CouponStepped" not in events
    note.s.cash_collateral = 2_000_000 * USD  # the operator posts cash collateral
    events, names = note.close(7_000)
    assert names.index("TopUpCured") < names.index("PeriodClosed")
    assert events["TopUpCured"]["collateral"] == 27_000_000 * USD
    assert events["CouponStepped"]["newStepBps"] == 0
    assert events["PeriodClosed"]["result"]["ltvLimitBps"] == 7_500


def test_the_two_steps_add_up():
    note = Note(terms=replace(TERMS, cure_period=10 * YEAR))  # the top-up stays open
    note.close(5_500)
    for _ in range(3):
        events, _ = note.close(9_500)
    assert events["PeriodClosed"]["result"]["newStepBps"] == -200 + 300
    assert note.senior.rate == 430 + 450 + 100


def test_rates_are_clamped_to_floor_and_cap():
    t = _tranche(SENIOR, 1_000 * USD, 450, 0)
    assert t.clamped_rate(430, -2_000) == 500
    assert t.clamped_rate(430, 2_000) == 2_500
    assert t.clamped_rate(430, -200) == 680


def test_a_missed_report_is_low_stale_and_marked_by_the_close():
    note = Note()
    events, names = note.close(0, report="missed")
    assert names[0] == "ReportMissed"
    end = G + PERIOD
    assert events["ReportMissed"] == {
        "fleetId": 1,
        "period": 0,
        "periodEnd": end,
        "staleSince": end + 7 * DAY,
    }
    inputs, result = events["PeriodClosed"]["inputs"], events["PeriodClosed"]["result"]
    assert (inputs["reportStatus"], inputs["reportRecordedAt"], inputs["revenueReported"]) == (
        2,
        0,
        0,
    )
    assert m.breach_names(result["breaches"]) == ["DSCR", "LTV", "stale", "low-util", "top-up open"]
    assert result["newStepBps"] == 300 and result["dscrBps"] == 0


def test_a_late_report_is_used_but_never_counts_as_high():
    note = Note()
    note.close(9_500)
    note.close(9_500)
    events, _ = note.close(9_500, report="late")
    result = events["PeriodClosed"]["result"]
    assert events["PeriodClosed"]["inputs"]["reportLate"] is True
    assert (result["highStreak"], result["lowStreak"], result["newStepBps"]) == (0, 0, 0)
    assert m.breach_names(result["breaches"]) == ["stale"]


def test_a_lapsed_cure_defaults_at_the_next_close_and_sweeps():
    note = Note()
    note.close(5_500)
    events, names = note.close(7_000, report="late")  # a week past the 30-day cure period
    assert "DefaultDeclared" in names and note.s.status == m.DEFAULTED
    result = events["PeriodClosed"]["result"]
    assert result["breaches"] & m.BREACH_DEFAULT and result["sweepOn"]


def test_uptime_below_the_sla_blocks_equity_only():
    note = Note()
    events, _ = note.close(8_000, uptime=9_800)
    result = events["PeriodClosed"]["result"]
    assert m.breach_names(result["breaches"]) == ["uptime"]
    assert result["equityBlocked"] and not result["sweepOn"]
    assert events["WaterfallDistributed"]["result"]["trapped"] > 0


# ---------------------------------------------------------------------------
# Coupon entitlements
# ---------------------------------------------------------------------------


def _single(rate=1_000, face=1_000_000 * USD, holders=((A, 600_000 * USD), (B, 400_000 * USD))):
    terms = m.TrancheTerms(1, 0, face, 1, G - DAY, G, G + 10 * YEAR, rate, 0, 0, 10_000, 10_000)
    t = m.Tranche(SENIOR, terms)
    t.state, t.last_accrual_at, t.outstanding, t.original = m.ACTIVE, G, face, face
    for holder, amount in holders:
        t.move(G, m.ZERO_ADDRESS, holder, amount)
    return t


def test_coupon_accrues_per_second_and_is_claimable_only_once_fully_paid():
    t = _single()
    one_year = G + YEAR
    assert t.interest_due(one_year) == 100_000 * USD  # 10 % of 1M for 365 days
    assert t.interest_due(G + 1) == -(-1_000_000 * USD * 1_000 // (10_000 * YEAR))  # rounded up
    paid = t.pay(one_year, 40_000 * USD, 0)
    assert (paid.due, paid.problem) == (100_000 * USD, None)
    assert t.claim_coupon(one_year, A) == (0, 60_000 * USD)  # partial: held, nothing claimable
    t.pay(one_year, 60_000 * USD, 0)
    assert t.entitlement(B, one_year) == (40_000 * USD, 0)
    assert t.claim_coupon(one_year, A) == (60_000 * USD, 0)
    assert t.pay(one_year, 1, 0).problem.startswith("InterestOverpaid")


def test_a_transfer_moves_face_but_not_what_it_earned():
    t = _single(holders=((A, 1_000_000 * USD),))
    half = G + YEAR // 2
    t.move(half, A, B, 500_000 * USD)
    end = G + YEAR
    t.pay(end, t.interest_due(end), 0)
    assert t.entitlement(A, end)[0] == 75_000 * USD  # 50,000 + 25,000
    assert t.entitlement(B, end)[0] == 25_000 * USD


def test_principal_is_shared_per_face():
    t = _single()
    t.pay(G + DAY, 0, 250_000 * USD)
    assert t.redeemable(G + DAY, A) == 150_000 * USD
    assert t.redeemable(G + DAY, B) == 100_000 * USD
    assert t.pay(G + DAY, 0, 750_001 * USD).problem.startswith("PrincipalOverpaid")


def test_scheduled_principal_rounds_up_and_is_all_due_at_maturity():
    t = _single(face=1_000_001)
    t.schedule = [(G + 90 * DAY, 3_333)]
    assert t.principal_due(G + 89 * DAY) == 0
    assert t.principal_due(G + 90 * DAY) == -(-1_000_001 * 3_333 // 10_000)
    assert t.principal_due(t.terms.maturity) == 1_000_001


# ---------------------------------------------------------------------------
# Synthetic histories: the replay's bookkeeping
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def history():
    ensure_artifacts("CollateralRegistry", "IdentityRegistry", "TelemetryOracle")
    ensure_artifacts("Servicer", "NoteTranche", "MockStablecoin")
    return synthetic_history(4_000, notes=3, periods=14, lenders=4, seed=11)


@pytest.fixture
def lines(history, tmp_path):
    path = tmp_path / "events.jsonl"
    write_jsonl(history, path)
    return path.read_text().splitlines()


def replayed(lines):
    """The model behind the hash chain: tampered lines replayed without the
    chain check (an archive rewritten and re-chained; see the chain's tests)."""
    return replay(parse_lines(lines, verify=False))


def first_index(lines, event):
    return next(i for i, line in enumerate(lines) if i and json.loads(line)["event"] == event)


def test_a_synthetic_history_replays_clean(history, lines):
    result = replayed(lines)
    assert result.mismatches == []
    assert result.events == len(history.events) == 4_000
    assert result.closes == 3 * 14
    assert result.fields_checked > result.events
    names = {e["event"] for e in history.events}
    assert {"TopUpRequired", "TopUpCured", "ReportMissed", "CouponStepped", "Repaid"} <= names


def test_an_altered_output_is_one_mismatch(lines):
    i = first_index(lines, "CouponClaimed")
    record = json.loads(lines[i])
    amount = int(record["args"]["amount"])
    record["args"]["amount"] = str(amount - 1)
    lines[i] = json.dumps(record)
    result = replayed(lines)
    assert [(x.event, x.field, x.expected, x.recorded, x.line) for x in result.mismatches] == [
        ("CouponClaimed", "amount", amount, str(amount - 1), i + 1)
    ]


def test_a_signer_set_outside_the_fault_rule_is_a_mismatch(lines):
    """A SignersChanged with 3 signers and quorum 2 (the review's 2-of-3) cannot
    come from the contract: the replay names the broken rule."""
    i = first_index(lines, "SignersChanged")
    record = json.loads(lines[i])
    record["args"]["signers"] = record["args"]["signers"][:3]
    record["args"]["quorum"] = 2
    lines[i] = json.dumps(record)
    found = [(x.event, x.field, x.recorded) for x in replayed(lines).mismatches]
    assert (
        "SignersChanged",
        "quorum = 2f + 1, 3f + 1 <= signers <= 16",
        "quorum 2 is even: the quorum must be 2f + 1 (3 for f = 1, 5 for f = 2, ...)",
    ) in found


def test_a_payment_removed_from_a_close_is_missing(lines):
    i = first_index(lines, "Paid")
    record = json.loads(lines[i])
    del lines[i]
    result = replayed(lines)
    assert [(x.event, x.field, x.expected, x.recorded) for x in result.mismatches] == [
        ("Paid", "(event)", "emitted", "missing")
    ]
    assert (result.mismatches[0].block, result.mismatches[0].address) == (
        record["block"],
        record["address"],
    )


def test_an_extra_event_in_a_close_is_reported(lines):
    i = first_index(lines, "WaterfallDistributed")
    lines.insert(i + 1, lines[i].replace('"log_index":', '"log_index":1000,"x":', 1))
    extra = json.loads(lines[i + 1])
    extra.pop("x")
    extra["log_index"] = json.loads(lines[i])["log_index"] + 1
    extra["event"] = "CouponStepped"
    extra["args"] = {
        "period": extra["args"]["period"],
        "oldStepBps": 0,
        "newStepBps": 0,
        "seniorRateBps": 0,
        "juniorRateBps": 0,
    }
    lines[i + 1] = json.dumps(extra)
    for j in range(i + 2, len(lines)):  # shift the rest of the block
        record = json.loads(lines[j])
        if record["block"] != extra["block"]:
            break
        record["log_index"] += 1
        lines[j] = json.dumps(record)
    result = replayed(lines)
    assert [(x.event, x.field, x.recorded) for x in result.mismatches] == [
        ("CouponStepped", "(event)", "emitted")
    ]


def test_duplicated_and_swapped_lines_are_reported(lines):
    i = first_index(lines, "RevenueReceived")
    duplicated = [*lines[: i + 1], lines[i], *lines[i + 1 :]]
    result = replayed(duplicated)
    assert [(x.field, x.line) for x in result.mismatches] == [("log_index", i + 2)]

    j = first_index(lines, "ReportSubmitted")
    lines[j], lines[j + 1] = lines[j + 1], lines[j]
    result = replayed(lines)
    assert [(x.field, x.line) for x in result.mismatches] == [("order", j + 2)]


def test_inconsistent_block_times_are_reported(lines):
    i = next(
        k
        for k in range(2, len(lines))
        if json.loads(lines[k])["block"] == json.loads(lines[k - 1])["block"]
        and json.loads(lines[k])["event"] == "RequestFulfilled"
    )
    record = json.loads(lines[i])
    record["timestamp"] += 5
    lines[i] = json.dumps(record)
    result = replayed(lines)
    assert result.mismatches[0].field == "timestamp" and result.mismatches[0].line == i + 1


def test_unknown_addresses_events_and_contract_names_are_reported(lines):
    last = json.loads(lines[-1])  # a revenue payment nothing after depends on
    assert last["event"] == "RevenueReceived"
    lines[-1] = json.dumps(dict(last, address="0x" + "99" * 20))
    assert [(x.field, x.recorded) for x in replayed(lines).mismatches] == [
        ("address", "0x" + "99" * 20)
    ]
    lines[-1] = json.dumps(dict(last, event="RevenueStolen"))
    assert [(x.field, x.recorded) for x in replayed(lines).mismatches] == [
        ("event", "RevenueStolen")
    ]
    lines[-1] = json.dumps(dict(last, contract="NoteTranche"))
    assert [(x.field, x.expected) for x in replayed(lines).mismatches] == [("contract", "Servicer")]


def test_broken_lines_and_headers(lines):
    result = replayed([*lines, "{not json", '{"block": 1}'])
    assert [x.field for x in result.mismatches] == ["line", "line"]
    with pytest.raises(AuditInputError):
        parse_lines(lines[1:])  # no header
    with pytest.raises(AuditInputError):
        parse_lines([])
    header = json.loads(lines[0])
    del header["terms"]
    with pytest.raises(AuditInputError):
        replayed([json.dumps(header), *lines[1:]])


# ---------------------------------------------------------------------------
# Manifest, codec, RPC pagination
# ---------------------------------------------------------------------------

CORE = {
    "CollateralRegistry": "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0",
    "IdentityRegistry": "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
    "TelemetryOracle": "0xCf7Ed3AccA5a467e9e704C703E8D87F634fB0Fc9",
}
NOTE = {
    "note_id": 1,
    "servicer": "0x712516e61C8B383dF4A63CFe83d7701Bce54B03e",
    "tranches": [
        "0x71C95911E9a5D330f4D621842EC243EE1343292e",
        "0x948B3c65b89DF0B4894ABE91E6D02FE579834F8F",
    ],
}


def test_manifest_audit_shape_and_errors():
    manifest = Manifest.from_dict({"chain_id": 31337, "contracts": {**CORE, "notes": [NOTE]}})
    assert manifest.notes[0].tranches == tuple(NOTE["tranches"])
    assert manifest.start_block == 0
    assert len(manifest.contract_names()) == 6
    assert Manifest.from_dict(manifest.to_dict()) == manifest
    top = Manifest.from_dict({"chain_id": 1, "start_block": 9, "contracts": CORE, "notes": [NOTE]})
    assert top.start_block == 9
    for broken in (
        {"contracts": {**CORE, "notes": [NOTE]}},
        {"chain_id": 1, "contracts": {"notes": [NOTE]}},
        {"chain_id": 1, "contracts": CORE},
        {"chain_id": 1, "contracts": {**CORE, "notes": [dict(NOTE, servicer="0x12")]}},
        {"chain_id": 1, "contracts": {**CORE, "notes": [dict(NOTE, tranches=[])]}},
    ):
        with pytest.raises(AuditInputError):
            Manifest.from_dict(broken)
    assert issubclass(AuditInputError, GpucreditError)


def test_manifest_written_by_the_deploy_script_is_read_as_is():
    from gpucredit.deployment import ContractRecord, FleetRecord, NoteRecord
    from gpucredit.deployment import Manifest as DeployManifest

    def record(name, address):
        return ContractRecord(contract=name, address=address)

    deployed = DeployManifest(
        chain_id=31337,
        network="development",
        deployer=ISSUER,
        block=42,
        contracts={
            "stablecoin": record("MockStablecoin", "0x5FbDB2315678afecb367f032d93F642f64180aa3"),
            "identity_registry": record("IdentityRegistry", CORE["IdentityRegistry"]),
            "collateral_registry": record("CollateralRegistry", CORE["CollateralRegistry"]),
            "telemetry_oracle": record("TelemetryOracle", CORE["TelemetryOracle"]),
        },
    )
    deployed.add_note(
        NoteRecord(
            note_id=1,
            name="GPU Fleet 2027",
            issuer=ISSUER,
            tranches={
                "GPUS-27": record("NoteTranche", NOTE["tranches"][0]),
                "GPUJ-27": record("NoteTranche", NOTE["tranches"][1]),
            },
            servicer=record("Servicer", NOTE["servicer"]),
            fleet=FleetRecord(
                operator=ISSUER,
                genesis=G,
                period_length=PERIOD,
                heartbeat=7 * DAY,
                signers=[],
                quorum=3,
            ),
            subscription_start=G - DAY,
            subscription_end=G,
            maturity=G + YEAR,
            block=50,
        )
    )
    manifest = Manifest.from_dict(deployed.model_dump(mode="json"))
    assert manifest.start_block == 42
    assert manifest.notes[0].tranches == tuple(NOTE["tranches"])
    assert manifest.notes[0].servicer == NOTE["servicer"]
    assert "0x5fbdb2315678afecb367f032d93f642f64180aa3" not in manifest.contract_names()


def test_decode_log_big_ints_as_strings_and_negative_steps(history):
    book = AbiBook()
    abi = book.event("Servicer", "PeriodClosed")
    inputs = (4, 1, False, 1_809_419_310, 5_200, 9_910, 149_760 * USD, 149_760 * USD, 111_109 * USD)
    inputs += (23_750_000 * USD, 0, 17_000_000 * USD)
    result = (13_478, 7_158, 6_500, 0, 1, -200, 300, 50, True, True)
    data = abi_encode([abi.data_types[0], abi.data_types[1]], [inputs, result])
    servicer = NOTE["servicer"]
    log = {
        "address": servicer.lower(),
        "topics": [abi.topic0, "0x" + (4).to_bytes(32, "big").hex()],
        "data": "0x" + data.hex(),
        "blockNumber": 63,
        "logIndex": 1,
        "transactionHash": "0x" + "ab" * 32,
    }
    earlier = dict(log, blockNumber=62, logIndex=7)
    events = decode_logs([log, earlier], {servicer.lower(): "Servicer"}, book, {62: 10, 63: 20})
    assert [(e["block"], e["log_index"], e["timestamp"]) for e in events] == [
        (62, 7, 10),
        (63, 1, 20),
    ]
    args = events[1]["args"]
    assert args["period"] == 4
    assert args["inputs"]["revenueReported"] == str(149_760 * USD)  # uint128: a string
    assert args["inputs"]["utilizationBps"] == 5_200  # uint16: a number
    assert args["result"]["oldStepBps"] == -200 and args["result"]["sweepOn"] is True
    assert events[1]["address"] == servicer and events[1]["event"] == "PeriodClosed"
    assert (
        abi.encode_args({"period": 4, "inputs": args["inputs"], "result": args["result"]}) == args
    )


class _Eth:
    """`eth_getLogs` of a node that refuses more than `limit` blocks at once."""

    def __init__(self, limit, fail=None):
        self.limit, self.fail, self.calls = limit, fail, []

    def get_logs(self, query):
        start, end = query["fromBlock"], query["toBlock"]
        self.calls.append((start, end))
        if self.fail:
            raise self.fail
        if end - start + 1 > self.limit:
            raise ValueError({"code": -32005, "message": "query returned more than 10000 results"})
        return [{"blockNumber": b, "logIndex": 0} for b in range(start, end + 1)]


class _W3:
    def __init__(self, eth):
        self.eth = eth


def test_fetch_logs_pages_and_halves_refused_ranges():
    eth = _Eth(limit=3)
    progress = []
    logs = fetch_logs(
        _W3(eth), [], 10, 29, page_size=8, progress=lambda d, t: progress.append((d, t))
    )
    assert [log["blockNumber"] for log in logs] == list(range(10, 30))
    assert eth.calls[:3] == [(10, 17), (10, 13), (10, 11)]  # 8 -> 4 -> 2 blocks
    assert progress[-1] == (20, 20)
    with pytest.raises(ConnectionError):
        fetch_logs(_W3(_Eth(limit=3, fail=ConnectionError("down"))), [], 0, 5)


# ---------------------------------------------------------------------------
# Report and CLI
# ---------------------------------------------------------------------------


def test_report_markdown_and_self_contained_html(history, lines, tmp_path):
    i = first_index(lines, "WaterfallDistributed")
    record = json.loads(lines[i])
    record["args"]["result"]["equity"] = "1"
    lines[i] = json.dumps(record)
    result = replayed(lines)
    paths = write_report(result, tmp_path / "report", source="synthetic")
    page = paths["html"].read_text()
    assert page.count("data:image/png;base64,") == 3 * 3  # three charts per note
    assert "<script" not in page and 'src="http' not in page
    assert "FAIL" in page and "result.equity" in page
    markdown = paths["markdown"].read_text()
    assert markdown.count("![") == 9 and "| mismatches | 1 |" in markdown
    assert "## Note 3" in markdown and "result.equity" in markdown
    charts = sorted(p.name for p in (tmp_path / "report" / "charts").iterdir())
    assert charts[:3] == [
        "note1-dscr-ltv.png",
        "note1-utilization-coupon.png",
        "note1-waterfall.png",
    ]
    assert all(
        p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        for p in (tmp_path / "report" / "charts").iterdir()
    )


def test_cli_replay_exit_codes(lines, tmp_path):
    runner = CliRunner()
    clean = tmp_path / "clean.jsonl"
    clean.write_text("\n".join(lines) + "\n")
    result = runner.invoke(
        audit_app, ["replay", "--events", str(clean), "--json", str(tmp_path / "ok.json")]
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "ok.json").read_text())["ok"] is True

    i = first_index(lines, "PeriodClosed")
    record = json.loads(lines[i])
    record["args"]["result"]["ltvBps"] += 1
    lines[i] = json.dumps(record)
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_text("\n".join(lines) + "\n")
    refused = runner.invoke(audit_app, ["replay", "--events", str(tampered)])
    assert refused.exit_code == 2 and f"line {i + 2}: hash chain broken" in refused.output
    tampered.write_text("\n".join(seal(lines)) + "\n")  # re-chained: the model catches it
    out = tmp_path / "bad.json"
    result = runner.invoke(audit_app, ["replay", "--events", str(tampered), "--json", str(out)])
    assert result.exit_code == 1
    mismatches = json.loads(out.read_text())["mismatches"]
    assert [(x["event"], x["field"]) for x in mismatches] == [("PeriodClosed", "result.ltvBps")]
    assert mismatches[0]["block"] == record["block"] and mismatches[0]["tx"] == record["tx"]

    assert (
        runner.invoke(audit_app, ["replay", "--events", str(tmp_path / "none.jsonl")]).exit_code
        == 2
    )
    assert runner.invoke(audit_app, ["replay"]).exit_code == 2
    assert runner.invoke(audit_app, ["export", "--out", str(tmp_path / "x.jsonl")]).exit_code == 2


def test_read_jsonl_matches_parse_lines(lines, tmp_path):
    path = Path(tmp_path / "events.jsonl")
    path.write_text("\n".join(lines) + "\n")
    loaded = read_jsonl(path)
    assert loaded.events == parse_lines(lines).events
    assert loaded.header["format"] == "gpucredit-audit/2"


# ---------------------------------------------------------------------------
# The archive's hash chain
# ---------------------------------------------------------------------------


def refusal(lines):
    with pytest.raises(AuditInputError) as caught:
        parse_lines(lines)
    return str(caught.value)


def test_the_archive_is_a_hash_chain(lines):
    header = json.loads(lines[0])
    assert header["events"] == len(lines) - 1
    assert header["archive_head"] == line_hash(lines[-1])
    assert json.loads(lines[1])["prev"] == header_seed(header)
    for before, line in zip(lines[1:], lines[2:], strict=False):
        assert json.loads(line)["prev"] == line_hash(before)
    assert len(parse_lines(lines).events) == len(lines) - 1
    assert all("prev" not in ev for ev in parse_lines(lines).events)


def test_a_truncated_reordered_padded_or_edited_archive_is_refused_at_its_first_break(lines):
    count = len(lines) - 1
    # cut short: the header says how many events it holds
    assert refusal(lines[:-3]).startswith(
        f"line {count - 1}: the header announces {count} events, the file ends after {count - 3}"
    )
    # reordered: lines 10 and 11 swapped
    swapped = [*lines[:9], lines[10], lines[9], *lines[11:]]
    assert refusal(swapped).startswith("line 10: hash chain broken")
    # padded: an extra line at the end, even one chained correctly
    extra = json.loads(lines[-1])
    extra["prev"] = line_hash(lines[-1])
    assert refusal([*lines, json.dumps(extra)]).startswith(
        f"line {count + 2}: beyond the {count} events the header announces (padded)"
    )
    # a line removed in the middle, and the count adjusted
    header = json.loads(lines[0])
    header["events"] = count - 1
    assert refusal([json.dumps(header), *lines[1:20], *lines[21:]]).startswith(
        "line 21: hash chain broken"
    )
    # one field edited: the next line's prev no longer matches
    record = json.loads(lines[30])
    record["args"] = dict(record["args"], tampered=1)
    assert refusal([*lines[:30], json.dumps(record), *lines[31:]]).startswith(
        "line 32: hash chain broken"
    )
    # the last line edited: the head no longer matches
    last = json.loads(lines[-1])
    last["args"] = dict(last["args"], tampered=1)
    assert f"line {count + 1}: the last line hashes to" in refusal(
        [*lines[:-1], json.dumps(last, separators=(",", ":"))]
    )
    # the header's terms edited: line 2 no longer chains to it
    header = json.loads(lines[0])
    next(iter(header["terms"]["servicers"].values()))["feePerPeriod"] = "1"
    assert refusal([json.dumps(header), *lines[1:]]).startswith("line 2: hash chain broken")
    # an unchained archive (format 1) is refused, not read without its chain
    old = json.loads(lines[0])
    old["format"] = "gpucredit-audit/1"
    assert "has no hash chain" in refusal([json.dumps(old), *lines[1:]])
    # re-chained after an edit, it reads (the model, then --verify-chain, catch the rest)
    assert len(parse_lines(seal([*lines[:30], json.dumps(record), *lines[31:]])).events) == count
