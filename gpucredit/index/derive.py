"""Derived tables: what lenders and auditors ask for, rebuilt from `events`.

Every derived table is recomputed from the raw `events` table (and the deal
terms in `index_meta`) inside the transaction that wrote the events, so the
two never disagree and a reorg rollback needs nothing special here.

Adapting to contract changes: the decoding is generic (the build ABIs), so a
new or renamed event lands in `events` without code. A derived table reads
events through `HANDLERS` (event name -> function) and through the field maps
below (`PERIOD_FIELDS`, `WATERFALL_FIELDS`, ...: column -> event argument), so
a renamed event or field is a one-line change in this file.

Money columns are integers in the stablecoin's base units (6 decimals); the
exports turn them into currency amounts (`gpucredit/index/exports.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
import ujson

from gpucredit.audit.rules import BREACH_DSCR, BREACH_LTV, BREACH_STALE, BREACH_UPTIME
from gpucredit.index.bulk import insert_rows
from gpucredit.index.schema import Big, metadata

SENIORITY = {0: "senior", 1: "junior"}
BREACH_REPORT = BREACH_STALE


def _col(name: str, kind: Any = None, **kw: Any) -> sa.Column:
    return sa.Column(name, kind if kind is not None else Big, **kw)


notes = sa.Table(
    "notes",
    metadata,
    sa.Column("note_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("servicer", sa.String(42), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    _col("size"),
    _col("outstanding"),
    _col("senior_rate_bps"),
    _col("junior_rate_bps"),
    _col("step_bps"),
    _col("last_period"),
    _col("last_close_at"),
    _col("next_close_at"),
    _col("last_dscr_bps"),
    _col("dscr_min_bps"),
    _col("last_ltv_bps"),
    _col("ltv_limit_bps"),
    _col("last_breaches"),
    _col("top_up_pending"),
    _col("last_report_at"),
    _col("maturity"),
    sa.Column("covenant_terms", sa.JSON),
    # the terminal split (WoundUp) and the tranches' write-offs (WrittenOff)
    _col("wound_up_at"),
    _col("wind_down_cash"),
    _col("wind_down_residual"),
    _col("principal_lost"),
    _col("interest_lost"),
)

tranches = sa.Table(
    "tranches",
    metadata,
    sa.Column("address", sa.String(42), primary_key=True),
    sa.Column("note_id", sa.Integer, nullable=False),
    sa.Column("seniority", sa.String(16), nullable=False),
    sa.Column("name", sa.String(128)),
    sa.Column("symbol", sa.String(32)),
    _col("max_size"),
    _col("issued"),
    _col("outstanding"),
    _col("rate_bps"),
    _col("reference_rate_bps"),
    _col("spread_bps"),
    _col("step_bps"),
    _col("floor_rate_bps"),
    _col("cap_rate_bps"),
    _col("maturity"),
    _col("interest_paid"),
    _col("principal_paid"),
    _col("coupons_claimed"),
    sa.Column("repaid", sa.Boolean, nullable=False, default=False),
    sa.Column("terms", sa.JSON),
    sa.Column("written_off", sa.Boolean, nullable=False, default=False),
    _col("principal_lost"),
    _col("interest_lost"),
)

periods = sa.Table(
    "periods",
    metadata,
    sa.Column("note_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("period", sa.Integer, primary_key=True, autoincrement=False),
    _col("block"),
    _col("timestamp"),
    sa.Column("tx", sa.String(66)),
    *[
        _col(c)
        for c in (
            "report_status",
            "report_recorded_at",
            "utilization_bps",
            "uptime_bps",
            "revenue_reported",
            "revenue_cash",
            "debt_service",
            "collateral_value",
            "cash_collateral",
            "outstanding",
            "dscr_bps",
            "dscr_min_bps",
            "ltv_bps",
            "ltv_limit_bps",
            "uptime_sla_bps",
            "high_streak",
            "low_streak",
            "old_step_bps",
            "new_step_bps",
            "breaches",
            "cash_in",
            "fees",
            "senior_interest",
            "junior_interest",
            "senior_principal",
            "junior_principal",
            "reserve_drawn",
            "reserve_added",
            "sweep",
            "equity",
            "trapped",
            "reserve_balance",
            "senior_rate_bps",
            "junior_rate_bps",
            "top_up_required",
            "top_up_shortfall",
            "top_up_deadline",
        )
    ],
    sa.Column("report_late", sa.Boolean),
    sa.Column("sweep_on", sa.Boolean),
    sa.Column("equity_blocked", sa.Boolean),
    sa.Column("dscr_breach", sa.Boolean),
    sa.Column("ltv_breach", sa.Boolean),
    sa.Column("uptime_breach", sa.Boolean),
    sa.Column("report_breach", sa.Boolean),
)

rate_changes = sa.Table(
    "rate_changes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("note_id", sa.Integer, nullable=False),
    sa.Column("tranche", sa.String(42), nullable=False),
    sa.Column("seniority", sa.String(16)),
    _col("block"),
    _col("timestamp"),
    sa.Column("tx", sa.String(66)),
    _col("period"),
    _col("old_rate_bps"),
    _col("new_rate_bps"),
    _col("reference_rate_bps"),
    _col("spread_bps"),
    _col("step_bps"),
    sa.Column("reason", sa.String(200)),
)

timeline = sa.Table(
    "timeline",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("note_id", sa.Integer, nullable=False),
    _col("block"),
    _col("log_index"),
    _col("timestamp"),
    sa.Column("tx", sa.String(66)),
    sa.Column("kind", sa.String(32)),
    sa.Column("summary", sa.String(300)),
)

positions = sa.Table(
    "positions",
    metadata,
    sa.Column("tranche", sa.String(42), primary_key=True),
    sa.Column("holder", sa.String(42), primary_key=True),
    sa.Column("note_id", sa.Integer, nullable=False),
    sa.Column("seniority", sa.String(16)),
    _col("requested"),
    _col("filled"),
    _col("refunded"),
    _col("shares"),
    _col("coupons_claimed"),
    _col("principal_redeemed"),
    _col("first_timestamp"),
    _col("last_timestamp"),
)

lender_flows = sa.Table(
    "lender_flows",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("note_id", sa.Integer, nullable=False),
    sa.Column("tranche", sa.String(42), nullable=False),
    sa.Column("holder", sa.String(42), nullable=False),
    _col("block"),
    _col("timestamp"),
    sa.Column("tx", sa.String(66)),
    sa.Column("kind", sa.String(32)),
    _col("amount"),
    sa.Index("ix_flows_holder", "holder"),
)

batches = sa.Table(
    "batches",
    metadata,
    sa.Column("batch_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("note_id", sa.Integer),
    sa.Column("operator", sa.String(42)),
    _col("gpus"),
    _col("total_cost"),
    sa.Column("model", sa.String(66)),
    _col("class_id"),
    sa.Column("status", sa.String(16)),
    _col("pledged_value"),
    _col("registered_at"),
    _col("pledged_at"),
)

oracle_reports = sa.Table(
    "oracle_reports",
    metadata,
    sa.Column("fleet_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("period", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("note_id", sa.Integer),
    sa.Column("status", sa.String(16)),
    _col("block"),
    _col("timestamp"),
    sa.Column("tx", sa.String(66)),
    _col("period_end"),
    _col("utilization_bps"),
    _col("uptime_bps"),
    _col("revenue"),
    _col("observations"),
    sa.Column("submitter", sa.String(42)),
    _col("quorum"),
    sa.Column("signers", sa.JSON),
    _col("delay_s"),
)

oracle_signers = sa.Table(
    "oracle_signers",
    metadata,
    sa.Column("fleet_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("signer", sa.String(42), primary_key=True),
    sa.Column("note_id", sa.Integer),
    _col("signer_version"),
    _col("quorum"),
    sa.Column("active", sa.Boolean),
    _col("since"),
    _col("last_report_at"),
)

DERIVED = (
    notes,
    tranches,
    periods,
    rate_changes,
    timeline,
    positions,
    lender_flows,
    batches,
    oracle_reports,
    oracle_signers,
)

# column -> (struct, field) of PeriodClosed / WaterfallDistributed
PERIOD_FIELDS = {
    "report_status": ("inputs", "reportStatus"),
    "report_late": ("inputs", "reportLate"),
    "report_recorded_at": ("inputs", "reportRecordedAt"),
    "utilization_bps": ("inputs", "utilizationBps"),
    "uptime_bps": ("inputs", "uptimeBps"),
    "revenue_reported": ("inputs", "revenueReported"),
    "revenue_cash": ("inputs", "revenueCash"),
    "debt_service": ("inputs", "debtService"),
    "collateral_value": ("inputs", "collateralValue"),
    "cash_collateral": ("inputs", "cashCollateral"),
    "outstanding": ("inputs", "outstanding"),
    "dscr_bps": ("result", "dscrBps"),
    "ltv_bps": ("result", "ltvBps"),
    "ltv_limit_bps": ("result", "ltvLimitBps"),
    "high_streak": ("result", "highStreak"),
    "low_streak": ("result", "lowStreak"),
    "old_step_bps": ("result", "oldStepBps"),
    "new_step_bps": ("result", "newStepBps"),
    "breaches": ("result", "breaches"),
    "sweep_on": ("result", "sweepOn"),
    "equity_blocked": ("result", "equityBlocked"),
}
WATERFALL_FIELDS = {
    "cash_in": "cashIn",
    "fees": "fees",
    "senior_interest": "seniorInterest",
    "junior_interest": "juniorInterest",
    "senior_principal": "seniorPrincipal",
    "junior_principal": "juniorPrincipal",
    "reserve_drawn": "reserveDrawn",
    "reserve_added": "reserveAdded",
    "sweep": "sweep",
    "equity": "equity",
    "trapped": "trapped",
    "reserve_balance": "reserveBalance",
}
# events shown on a note's timeline, with a one-line summary
TIMELINE = {
    "TopUpRequired": lambda a: f"top-up required: shortfall {_usd(a['shortfall'])}",
    "TopUpCured": lambda a: f"top-up cured: collateral {_usd(a['collateral'])}",
    "CouponStepped": lambda a: f"coupon step {a['oldStepBps']:+d} -> {a['newStepBps']:+d} bps",
    "DefaultDeclared": lambda a: f"default declared: collateral {_usd(a['collateral'])}",
    "SteppedIn": lambda a: f"trustee {a['trustee']} stepped in",
    "CashCollateralPosted": lambda a: f"cash collateral posted {_usd(a['amount'])}",
    "BatchPledged": lambda a: f"batch {a['batchId']} pledged, value {_usd(a['collateralValue'])}",
    "BatchVoided": lambda a: f"batch {a['batchId']} voided: {a.get('reason', '')}",
    "NoteReleased": lambda a: "note released",
    "WoundUp": lambda a: (
        f"wound up: cash {_usd(a['cashIn'])}: fees {_usd(a['fees'])}, senior "
        f"{_usd(int(a['seniorInterest']) + int(a['seniorPrincipal']))}, junior "
        f"{_usd(int(a['juniorInterest']) + int(a['juniorPrincipal']))}, "
        f"operator {_usd(a['residual'])}"
    ),
    "WrittenOff": lambda a: (
        f"tranche written off: principal lost {_usd(a['principalLost'])}, "
        f"interest lost {_usd(a['interestLost'])}"
    ),
    "Repaid": lambda a: "tranche repaid",
    "DrawnDown": lambda a: f"drawn down {_usd(a['principal'])}",
}
ORACLE_EVENT_CONTRACT = "TelemetryOracle"


def _usd(value: Any) -> str:
    return f"${int(value) / 1e6:,.2f}"


def _int(value: Any) -> Any:
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    return value


class _State:
    """Rows being built, keyed as their tables' primary keys."""

    def __init__(self, meta: dict[str, Any]) -> None:
        self.meta = meta
        manifest = meta.get("manifest") or {}
        terms = meta.get("terms") or {"servicers": {}, "tranches": {}}
        self.notes: dict[int, dict[str, Any]] = {}
        self.tranches: dict[str, dict[str, Any]] = {}
        self.servicer_note: dict[str, int] = {}
        for raw in (manifest.get("contracts") or {}).get("notes", []):
            note_id = int(raw["note_id"])
            cov = terms["servicers"].get(raw["servicer"], {})
            self.servicer_note[raw["servicer"]] = note_id
            self.notes[note_id] = {
                "note_id": note_id,
                "servicer": raw["servicer"],
                "status": "subscription",
                "size": 0,
                "outstanding": 0,
                "step_bps": 0,
                "dscr_min_bps": _int(cov.get("dscrMinBps")),
                "ltv_limit_bps": _int(cov.get("maxLtvBps")),
                "top_up_pending": 0,
                "covenant_terms": cov,
                "principal_lost": 0,
                "interest_lost": 0,
            }
            for i, address in enumerate(raw["tranches"]):
                t = {k: _int(v) for k, v in terms["tranches"].get(address, {}).items()}
                self.tranches[address] = {
                    "address": address,
                    "note_id": note_id,
                    "seniority": SENIORITY.get(t.get("seniority", i), f"class {i}"),
                    "max_size": t.get("maxSize"),
                    "issued": 0,
                    "outstanding": 0,
                    "reference_rate_bps": t.get("referenceRateBps"),
                    "spread_bps": t.get("spreadBps"),
                    "step_bps": 0,
                    "floor_rate_bps": t.get("floorRateBps"),
                    "cap_rate_bps": t.get("capRateBps"),
                    "maturity": t.get("maturity"),
                    "rate_bps": None,
                    "interest_paid": 0,
                    "principal_paid": 0,
                    "coupons_claimed": 0,
                    "repaid": False,
                    "terms": terms["tranches"].get(address, {}),
                    "written_off": False,
                    "principal_lost": 0,
                    "interest_lost": 0,
                }
                self.notes[note_id]["maturity"] = t.get("maturity")
        self.periods: dict[tuple[int, int], dict[str, Any]] = {}
        self.rate_changes: list[dict[str, Any]] = []
        self.timeline: list[dict[str, Any]] = []
        self.positions: dict[tuple[str, str], dict[str, Any]] = {}
        self.flows: list[dict[str, Any]] = []
        self.batches: dict[int, dict[str, Any]] = {}
        self.reports: dict[tuple[int, int], dict[str, Any]] = {}
        self.signers: dict[tuple[int, str], dict[str, Any]] = {}
        self.fleets: dict[int, dict[str, Any]] = {}  # fleet id -> note id, quorum, signers
        self.tx_events: dict[str, list[str]] = {}

    def position(self, tranche: str, holder: str, ts: int) -> dict[str, Any]:
        key = (tranche, holder)
        row = self.positions.get(key)
        if row is None:
            t = self.tranches[tranche]
            row = self.positions[key] = {
                "tranche": tranche,
                "holder": holder,
                "note_id": t["note_id"],
                "seniority": t["seniority"],
                "requested": 0,
                "filled": 0,
                "refunded": 0,
                "shares": 0,
                "coupons_claimed": 0,
                "principal_redeemed": 0,
                "first_timestamp": ts,
            }
        row["last_timestamp"] = ts
        return row

    def flow(self, ev: dict[str, Any], holder: str, kind: str, amount: Any) -> None:
        t = self.tranches[ev["address"]]
        self.flows.append(
            {
                "note_id": t["note_id"],
                "tranche": ev["address"],
                "holder": holder,
                "block": ev["block"],
                "timestamp": ev["timestamp"],
                "tx": ev["tx"],
                "kind": kind,
                "amount": int(amount),
            }
        )

    def period(self, note_id: int, period: int) -> dict[str, Any]:
        return self.periods.setdefault((note_id, period), {"note_id": note_id, "period": period})


Handler = Callable[[_State, dict[str, Any], dict[str, Any]], None]
HANDLERS: dict[str, Handler] = {}


def handles(*names: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for name in names:
            HANDLERS[name] = fn
        return fn

    return register


def _note_of(s: _State, ev: dict[str, Any]) -> int | None:
    if ev["contract"] == "Servicer":
        return s.servicer_note.get(ev["address"])
    if ev["contract"] == "NoteTranche" and ev["address"] in s.tranches:
        return s.tranches[ev["address"]]["note_id"]
    return ev.get("note_id")


@handles("TrancheInitialised")
def _tranche_init(s: _State, ev: dict[str, Any], a: dict[str, Any]) -> None:
    t = s.tranches.get(ev["address"])
    if t is not None:
        t.update(name=a.get("name"), symbol=a.get("symbol"), rate_bps=_int(a.get("rateBps")))


@handles("RateChanged")
def _rate_changed(s: _State, ev: dict[str, Any], a: dict[str, Any]) -> None:
    t = s.tranches.get(ev["address"])
    if t is None:
        return
    new, old, step = _int(a["newRateBps"]), _int(a["oldRateBps"]), _int(a["stepBps"])
    previous_step = t["step_bps"] or 0
    t.update(rate_bps=new, step_bps=step, reference_rate_bps=_int(a["referenceRateBps"]))
    names = s.tx_events.get(ev["tx"], [])
    period = s.meta.get("_last_close", {}).get(t["note_id"])
    if "TopUpCured" in names:
        reason = "top-up cured: the step-up is removed"
    elif step != previous_step:
        if step < previous_step and previous_step > 0 and step >= 0:
            reason = "step-up removed: utilization recovered"
        elif step < previous_step:
            reason = "step-down: sustained high utilization"
        else:
            reason = "step-up: utilization below the threshold"
    elif "PeriodClosed" in names:
        reason = "period close"
    else:
        reason = "reference rate or spread change"
    s.rate_changes.append(
        {
            "note_id": t["note_id"],
            "tranche": ev["address"],
            "seniority": t["seniority"],
            "block": ev["block"],
            "timestamp": ev["timestamp"],
            "tx": ev["tx"],
            "period": period,
            "old_rate_bps": old,
            "new_rate_bps": new,
            "reference_rate_bps": _int(a["referenceRateBps"]),
            "spread_bps": _int(a["spreadBps"]),
            "step_bps": step,
            "reason": reason,
        }
    )


@handles("DepositRequest")
def _deposit(s: _State, ev: dict[str, Any], a: dict[str, Any]) -> None:
    if ev["address"] in s.tranches:
        p = s.position(ev["address"], a["controller"], ev["timestamp"])
        p["requested"] += int(a["assets"])
        s.flow(ev, a["controller"], "requested", a["assets"])


@handles("DepositRequestCancelled")
def _cancel(s: _State, ev: dict[str, Any], a: dict[str, Any]) -> None:
    if ev["address"] in s.tranches:
        p = s.position(ev["address"], a["controller"], ev["timestamp"])
        p["requested"] -= int(a["assets"])
        s.flow(ev, a["controller"], "cancelled", a["assets"])


@handles("RequestFulfilled")
def _fulfilled(s: _State, ev: dict[str, Any], a: dict[str, Any]) -> None:
    if ev["address"] in s.tranches:
        p = s.position(ev["address"], a["controller"], ev["timestamp"])
        p["filled"] += int(a["filled"])
        p["refunded"] += int(a["refunded"])
        s.tranches[ev["address"]]["issued"] += int(a["filled"])
        s.flow(ev, a["controller"], "filled", a["filled"])


@handles("Transfer")
def _transfer(s: _State, ev: dict[str, Any], a: dict[str, Any]) -> None:
    if ev["address"] not in s.tranches:
        return
    value = int(a.get("value", 0))
    zero = "0x" + "0" * 40
    if a["from"] != zero:
        s.position(ev["address"], a["from"], ev["timestamp"])["shares"] -= value
    if a["to"] != zero:
        s.position(ev["address"], a["to"], ev["timestamp"])["shares"] += value


@handles("CouponClaimed")
def _claimed(s: _State, ev: dict[str, Any], a: dict[str, Any]) -> None:
    if ev["address"] in s.tranches:
        s.position(ev["address"], a["holder"], ev["timestamp"])["coupons_claimed"] += int(
            a["amount"]
        )
        s.tranches[ev["address"]]["coupons_claimed"] += int(a["amount"])
        s.flow(ev, a["holder"], "coupon_claimed", a["amount"])


@handles("PrincipalRedeemed")
def _redeemed(s: _State, ev: dict[str, Any], a: dict[str, Any]) -> None:
    if ev["address"] in s.tranches:
        s.position(ev["address"], a["holder"], ev["timestamp"])["principal_redeemed"] += int(
            a["amount"]
        )
        s.flow(ev, a["holder"], "principal_redeemed", a["amount"])


@handles("Paid")
def _paid(s: _State, ev: dict[str, Any], a: dict[str, Any]) -> None:
    t = s.tranches.get(ev["address"])
    if t is not None:
        t["interest_paid"] += int(a["interest"])
        t["principal_paid"] += int(a["principal"])
        t["outstanding"] = int(a["outstandingAfter"])


@handles("DrawnDown")
def _drawn(s: _State, ev: dict[str, Any], a: dict[str, Any]) -> None:
    t = s.tranches.get(ev["address"])
    if t is not None:
        t["outstanding"] = int(a["principal"])
        s.notes[t["note_id"]]["status"] = "active"


@handles("Repaid")
def _repaid(s: _State, ev: dict[str, Any], a: dict[str, Any]) -> None:
    t = s.tranches.get(ev["address"])
    if t is not None:
        t["repaid"] = True
        t["outstanding"] = 0
        if all(x["repaid"] for x in s.tranches.values() if x["note_id"] == t["note_id"]):
            s.notes[t["note_id"]]["status"] = "repaid"


@handles("PeriodClosed")
def _closed(s: _State, ev: dict[str, Any], a: dict[str, Any]) -> None:
    note_id = _note_of(s, ev)
    if note_id is None:
        return
    row = s.period(note_id, int(a["period"]))
    row.update(block=ev["block"], timestamp=ev["timestamp"], tx=ev["tx"])
    for column, (struct, name) in PERIOD_FIELDS.items():
        row[column] = _int(a[struct].get(name))
    note = s.notes[note_id]
    breaches = int(row["breaches"] or 0)
    row.update(
        dscr_min_bps=note["dscr_min_bps"],
        uptime_sla_bps=_int(note["covenant_terms"].get("uptimeSlaBps")),
        dscr_breach=bool(breaches & BREACH_DSCR),
        ltv_breach=bool(breaches & BREACH_LTV),
        uptime_breach=bool(breaches & BREACH_UPTIME),
        report_breach=bool(breaches & BREACH_REPORT),
    )
    s.meta.setdefault("_last_close", {})[note_id] = int(a["period"])
    note.update(
        last_period=row["period"],
        last_close_at=ev["timestamp"],
        last_dscr_bps=row["dscr_bps"],
        last_ltv_bps=row["ltv_bps"],
        ltv_limit_bps=row["ltv_limit_bps"],
        last_breaches=breaches,
        step_bps=row["new_step_bps"],
        outstanding=row["outstanding"],
    )
    if note["status"] == "subscription":
        note["status"] = "active"


@handles("WaterfallDistributed")
def _waterfall(s: _State, ev: dict[str, Any], a: dict[str, Any]) -> None:
    note_id = _note_of(s, ev)
    if note_id is None:
        return
    row = s.period(note_id, int(a["period"]))
    for column, name in WATERFALL_FIELDS.items():
        row[column] = _int(a["result"].get(name))


@handles("TopUpRequired")
def _top_up(s: _State, ev: dict[str, Any], a: dict[str, Any]) -> None:
    note_id = _note_of(s, ev)
    if note_id is None:
        return
    row = s.period(note_id, int(a["period"]))
    row.update(
        top_up_required=_int(a["requiredCollateral"]),
        top_up_shortfall=_int(a["shortfall"]),
        top_up_deadline=_int(a["deadline"]),
    )
    s.notes[note_id]["top_up_pending"] = 1


@handles("TopUpCured")
def _cured(s: _State, ev: dict[str, Any], a: dict[str, Any]) -> None:
    note_id = _note_of(s, ev)
    if note_id is not None:
        s.notes[note_id]["top_up_pending"] = 0


@handles("DefaultDeclared")
def _default(s: _State, ev: dict[str, Any], a: dict[str, Any]) -> None:
    note_id = _note_of(s, ev)
    if note_id is not None:
        s.notes[note_id]["status"] = "defaulted"


@handles("SteppedIn")
def _stepped_in(s: _State, ev: dict[str, Any], a: dict[str, Any]) -> None:
    note_id = _note_of(s, ev)
    if note_id is not None:
        s.notes[note_id]["status"] = "stepped-in"


@handles("BatchRegistered")
def _batch(s: _State, ev: dict[str, Any], a: dict[str, Any]) -> None:
    s.batches[int(a["batchId"])] = {
        "batch_id": int(a["batchId"]),
        "operator": a.get("operator"),
        "gpus": _int(a.get("count")),
        "total_cost": _int(a.get("totalCost")),
        "model": a.get("model"),
        "class_id": _int(a.get("classId")),
        "status": "registered",
        "registered_at": ev["timestamp"],
    }


@handles("BatchAttested")
def _attested(s: _State, ev: dict[str, Any], a: dict[str, Any]) -> None:
    if int(a["batchId"]) in s.batches:
        s.batches[int(a["batchId"])]["status"] = "attested"


@handles("BatchPledged")
def _pledged(s: _State, ev: dict[str, Any], a: dict[str, Any]) -> None:
    b = s.batches.setdefault(int(a["batchId"]), {"batch_id": int(a["batchId"])})
    b.update(
        note_id=int(a["noteId"]),
        status="pledged",
        pledged_value=_int(a["collateralValue"]),
        pledged_at=ev["timestamp"],
    )


@handles("BatchVoided")
def _voided(s: _State, ev: dict[str, Any], a: dict[str, Any]) -> None:
    b = s.batches.setdefault(int(a["batchId"]), {"batch_id": int(a["batchId"])})
    b["status"] = "voided"


@handles("FleetRegistered")
def _fleet(s: _State, ev: dict[str, Any], a: dict[str, Any]) -> None:
    consumer = a.get("consumer")
    s.fleets[int(a["fleetId"])] = {
        "note_id": s.servicer_note.get(consumer),
        "quorum": None,
        "signers": [],
    }


@handles("SignersChanged")
def _signers(s: _State, ev: dict[str, Any], a: dict[str, Any]) -> None:
    fleet_id = int(a["fleetId"])
    fleet = s.fleets.setdefault(fleet_id, {"note_id": None, "quorum": None, "signers": []})
    fleet.update(quorum=_int(a["quorum"]), signers=list(a["signers"]))
    for (fid, _), row in s.signers.items():
        if fid == fleet_id:
            row["active"] = False
    for signer in a["signers"]:
        row = s.signers.get((fleet_id, signer))
        if row is None or not row["active"]:
            s.signers[(fleet_id, signer)] = {
                "fleet_id": fleet_id,
                "signer": signer,
                "note_id": fleet["note_id"],
                "since": ev["timestamp"],
                "last_report_at": None,
            }
        s.signers[(fleet_id, signer)].update(
            active=True, quorum=_int(a["quorum"]), signer_version=_int(a["signerVersion"])
        )


@handles("ReportSubmitted", "ReportMissed")
def _report(s: _State, ev: dict[str, Any], a: dict[str, Any]) -> None:
    fleet_id = int(a["fleetId"])
    fleet = s.fleets.get(fleet_id, {"note_id": None, "quorum": None, "signers": []})
    missed = ev["event"] == "ReportMissed"
    period_end = _int(a.get("periodEnd"))
    s.reports[(fleet_id, int(a["period"]))] = {
        "fleet_id": fleet_id,
        "period": int(a["period"]),
        "note_id": fleet["note_id"],
        "status": "missed" if missed else "reported",
        "block": ev["block"],
        "timestamp": ev["timestamp"],
        "tx": ev["tx"],
        "period_end": period_end,
        "utilization_bps": _int(a.get("utilizationBps")),
        "uptime_bps": _int(a.get("uptimeBps")),
        "revenue": _int(a.get("revenue")),
        "observations": _int(a.get("observations")),
        "submitter": a.get("submitter"),
        "quorum": fleet["quorum"],
        "signers": list(fleet["signers"]),
        "delay_s": None if period_end is None else ev["timestamp"] - period_end,
    }
    if not missed:
        for (fid, _), row in s.signers.items():
            if fid == fleet_id and row["active"]:
                row["last_report_at"] = ev["timestamp"]
        if fleet["note_id"] is not None:
            s.notes[fleet["note_id"]]["last_report_at"] = ev["timestamp"]


@handles("NoteReleased")
def _released(s: _State, ev: dict[str, Any], a: dict[str, Any]) -> None:
    """The servicer's `releaseCollateral()` (the registry's event of the same
    name, which releases the liens, changes no status)."""
    note_id = s.servicer_note.get(ev["address"]) if ev["contract"] == "Servicer" else None
    if note_id is not None:
        s.notes[note_id]["status"] = "released"


@handles("WoundUp")
def _wound_up(s: _State, ev: dict[str, Any], a: dict[str, Any]) -> None:
    """The terminal split: after `releaseCollateral()` the note stays
    released; the trustee's `finishWindDown()` (a stepped-in note) leaves it
    wound down. Outstanding is what the tranches still owe once paid and
    written off (set at the end of `rebuild`)."""
    note_id = _note_of(s, ev)
    if note_id is None:
        return
    note = s.notes[note_id]
    if note["status"] != "released":
        note["status"] = "wound-down"
    note.update(
        wound_up_at=ev["timestamp"],
        wind_down_cash=int(a["cashIn"]),
        wind_down_residual=int(a["residual"]),
        top_up_pending=0,
    )


@handles("WrittenOff")
def _written_off(s: _State, ev: dict[str, Any], a: dict[str, Any]) -> None:
    t = s.tranches.get(ev["address"])
    if t is None:
        return
    t.update(
        written_off=True,
        outstanding=0,
        principal_lost=int(a["principalLost"]),
        interest_lost=int(a["interestLost"]),
    )
    note = s.notes[t["note_id"]]
    note["principal_lost"] += int(a["principalLost"])
    note["interest_lost"] += int(a["interestLost"])


_CHECKED: set[tuple[str, int]] = set()


def _ensure_columns(conn: sa.Connection) -> None:
    """An index built before a derived column was added: its derived tables
    are rebuilt from `events` anyway, so a stale one is dropped and re-created
    (once per database and process)."""
    key = (str(conn.engine.url), id(conn.engine))
    if key in _CHECKED:
        return
    inspector = sa.inspect(conn)
    for table in DERIVED:
        have = {c["name"] for c in inspector.get_columns(table.name)}
        if set(table.columns.keys()) - have:
            table.drop(conn)
            table.create(conn)
    _CHECKED.add(key)


def rebuild(conn: sa.Connection, meta: dict[str, Any]) -> None:
    """Recomputes every derived table from `events` (ordered by block, log index)."""
    s = _State(dict(meta))
    # in one go on the driver's cursor (plain tuples): row by row through a SQLAlchemy
    # Result was a third of this function's time
    cursor = conn.connection.cursor()
    try:
        cursor.execute(
            "SELECT block, log_index, timestamp, tx, contract, address, event, note_id, args "
            "FROM events ORDER BY block, log_index"
        )
        rows = cursor.fetchall()
    finally:
        cursor.close()
    evs = []
    loads = ujson.loads
    tx_events = s.tx_events
    for r in rows:
        args = loads(r[8]) if isinstance(r[8], str) else r[8]
        evs.append(
            {
                "block": r[0],
                "log_index": r[1],
                "timestamp": r[2],
                "tx": r[3],
                "contract": r[4],
                "address": r[5],
                "event": r[6],
                "note_id": r[7],
                "args": args,
            }
        )
        tx_events.setdefault(r[3], []).append(r[6])
    for ev in evs:
        handler = HANDLERS.get(ev["event"])
        if handler is not None:
            handler(s, ev, ev["args"])
        summary = TIMELINE.get(ev["event"])
        note_id = _note_of(s, ev)
        if summary is not None and note_id is not None:
            s.timeline.append(
                {
                    "note_id": note_id,
                    "block": ev["block"],
                    "log_index": ev["log_index"],
                    "timestamp": ev["timestamp"],
                    "tx": ev["tx"],
                    "kind": ev["event"],
                    "summary": summary(ev["args"]),
                }
            )
    for row in s.periods.values():
        row["senior_rate_bps"] = None
        row["junior_rate_bps"] = None
    # rates after each close: the tranche's last rate change at or before the close
    changes_of: dict[Any, list[dict[str, Any]]] = {}
    for rc in s.rate_changes:
        changes_of.setdefault(rc["note_id"], []).append(rc)
    for row in s.periods.values():
        for rc in changes_of.get(row["note_id"], ()):
            if rc["block"] <= (row.get("block") or 0):
                row[f"{rc['seniority']}_rate_bps"] = rc["new_rate_bps"]
    for t in s.tranches.values():
        initial = t["rate_bps"]
        for row in s.periods.values():
            key = f"{t['seniority']}_rate_bps"
            if row["note_id"] == t["note_id"] and key in row and row[key] is None:
                row[key] = initial
    for note in s.notes.values():
        left = 0
        for t in s.tranches.values():
            if t["note_id"] == note["note_id"]:
                note[f"{t['seniority']}_rate_bps"] = t["rate_bps"]
                note["size"] = (note["size"] or 0) + (t["issued"] or 0)
                left += t["outstanding"] or 0
        if note.get("wound_up_at") is not None:  # after the terminal split: what is still owed
            note["outstanding"] = left
        period_length = 30 * 86_400
        if note.get("last_close_at"):
            note["next_close_at"] = note["last_close_at"] + period_length
    _ensure_columns(conn)
    for table in DERIVED:
        conn.execute(table.delete())
    _insert(conn, notes, list(s.notes.values()))
    _insert(conn, tranches, list(s.tranches.values()))
    _insert(conn, periods, list(s.periods.values()))
    _insert(conn, rate_changes, s.rate_changes)
    _insert(conn, timeline, s.timeline)
    _insert(conn, positions, list(s.positions.values()))
    _insert(conn, lender_flows, s.flows)
    _insert(conn, batches, list(s.batches.values()))
    _insert(conn, oracle_reports, list(s.reports.values()))
    _insert(conn, oracle_signers, list(s.signers.values()))


def _insert(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    names = [c.name for c in table.columns if not (c.primary_key and c.name == "id")]
    insert_rows(conn, table, [{n: r.get(n) for n in names} for r in rows])
