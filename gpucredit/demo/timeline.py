"""The timeline: one row per closed period, read back from the chain's events
(what the demo prints and timeline.json records)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from web3.logs import DISCARD

from gpucredit.cli_common import breach_names
from gpucredit.demo.display import usd


@dataclass
class NoteContracts:
    """What reading a close needs: the note's contracts and who the signers are."""

    w3: Any
    note_id: int
    block: int  # the note's creation block
    servicer: Any
    tranches: dict[str, Any]  # by symbol, senior first
    oracle: Any
    signer_name: Callable[[str], str]


@dataclass
class Row:
    """One closed period, as the timeline shows it (and timeline.json records it)."""

    period: int
    story: str
    utilization_bps: int
    uptime_bps: int
    revenue_reported: int
    revenue_cash: int
    dscr_bps: int
    ltv_bps: int
    ltv_limit_bps: int
    senior_rate_bps: int
    junior_rate_bps: int
    old_step_bps: int
    new_step_bps: int
    top_up_due: int
    top_up_cured: bool
    sweep: int
    equity: int
    equity_blocked: bool
    principal: int
    breaches: list[str]
    observations: int
    report_status: str  # "reported", or "missed" (no quorum by the heartbeat: marked missed)
    report_by: str  # the node that posted the report, or marked it missed
    closed_by: str
    seconds: float
    events: list[str] = field(default_factory=list)


def read_row(
    note: NoteContracts, period: int, story: str, events: list[str], seconds: float
) -> Row:
    """The row of `period` from its close's events (PeriodClosed, WaterfallDistributed,
    TopUpRequired, TopUpCured) and the oracle's report, with `events` first."""
    w3 = note.w3
    closed = note.servicer.events.PeriodClosed().get_logs(
        from_block=note.block, argument_filters={"period": period}
    )[0]
    receipt = w3.eth.get_transaction_receipt(closed["transactionHash"])
    inputs, result = closed["args"]["inputs"], closed["args"]["result"]

    def logs(event: str) -> list[Any]:
        return list(getattr(note.servicer.events, event)().process_receipt(receipt, errors=DISCARD))

    waterfall = logs("WaterfallDistributed")[0]["args"]["result"]
    topup = logs("TopUpRequired")
    cured = logs("TopUpCured")
    filters = {"fleetId": note.note_id, "period": period}
    submitted = note.oracle.events.ReportSubmitted().get_logs(
        from_block=note.block, argument_filters=filters
    )
    if submitted:
        status, observations = "reported", submitted[0]["args"]["observations"]
        by = submitted[0]["args"]["submitter"]
    else:
        missed = note.oracle.events.ReportMissed().get_logs(
            from_block=note.block, argument_filters=filters
        )
        status, observations = "missed", 0
        by = w3.eth.get_transaction(missed[0]["transactionHash"])["from"]
    block = receipt["blockNumber"]
    senior, junior = list(note.tranches.values())
    row = Row(
        period=period,
        story=story,
        utilization_bps=inputs["utilizationBps"],
        uptime_bps=inputs["uptimeBps"],
        revenue_reported=inputs["revenueReported"],
        revenue_cash=inputs["revenueCash"],
        dscr_bps=result["dscrBps"],
        ltv_bps=result["ltvBps"],
        ltv_limit_bps=result["ltvLimitBps"],
        senior_rate_bps=senior.functions.currentRateBps().call(block_identifier=block),
        junior_rate_bps=junior.functions.currentRateBps().call(block_identifier=block),
        old_step_bps=result["oldStepBps"],
        new_step_bps=result["newStepBps"],
        top_up_due=topup[0]["args"]["shortfall"] if topup else 0,
        top_up_cured=bool(cured),
        sweep=waterfall["sweep"],
        equity=waterfall["equity"],
        equity_blocked=result["equityBlocked"],
        principal=waterfall["seniorPrincipal"] + waterfall["juniorPrincipal"],
        breaches=breach_names(result["breaches"]),
        observations=observations,
        report_status=status,
        report_by=note.signer_name(by),
        closed_by=note.signer_name(receipt["from"]),
        seconds=round(seconds, 2),
        events=events,
    )
    if status == "missed":
        row.events.append("no report: marked missed")
    if row.old_step_bps != row.new_step_bps:
        row.events.append(f"coupon step {row.old_step_bps:+d} -> {row.new_step_bps:+d} bps")
    if row.top_up_due:
        row.events.append(f"top-up {usd(row.top_up_due)} due")
    if row.top_up_cured:
        row.events.append("top-up cured")
    if row.sweep:
        row.events.append(f"sweep {usd(row.sweep)} to senior")
    if row.equity_blocked:
        row.events.append("equity blocked")
    elif row.equity:
        row.events.append(f"equity {usd(row.equity)} released")
    if row.breaches:
        row.events.append("breach: " + ", ".join(row.breaches))
    if row.principal:
        row.events.append(f"principal {usd(row.principal)} repaid")
    return row
