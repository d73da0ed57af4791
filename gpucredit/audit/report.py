"""The audit report: Markdown and a self-contained HTML page with PNG charts.

Per note: the deal terms, one row per period close (report, covenant
inputs and ratios, step and rates, breaches, every waterfall bucket) and
three charts (matplotlib, Agg backend):

- utilization against the coupon rates, with the step thresholds;
- DSCR and LTV against their thresholds (the LTV limit tightens while the
  low-utilization step is on);
- cumulative cash by waterfall bucket.

Then every mismatch, with block, transaction, log, line, event, field,
expected and recorded value. `write_report` writes `audit.md` with the charts
as files under `charts/`, and `audit.html` with the same charts embedded as
base64 PNGs (no external file, script or stylesheet).
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from gpucredit.audit.model import UINT32_MAX, breach_names  # noqa: E402
from gpucredit.audit.replay import Mismatch, NoteSummary, PeriodRow, ReplayResult  # noqa: E402

_REPORT_STATUS = {0: "none", 1: "on time", 2: "missed"}
_BUCKETS = (
    ("fees", "fees"),
    ("seniorInterest", "senior interest"),
    ("juniorInterest", "junior interest"),
    ("seniorPrincipal", "senior principal"),
    ("juniorPrincipal", "junior principal"),
    ("reserveAdded", "reserve added"),
    ("sweep", "sweep"),
    ("equity", "equity"),
)
_MAX_DSCR_SHOWN = 5.0  # DSCR above this (or "no debt service") is drawn at the top, marked
_MAX_LTV_SHOWN_BPS = 20_000  # LTV above 200 % likewise


@dataclass
class Chart:
    name: str
    title: str
    png: bytes


def _money(value: int, decimals: int) -> str:
    return f"{value / 10**decimals:,.2f}"


def _pct(bps: int) -> str:
    return f"{bps / 100:.2f}%"


def _dscr(bps: int) -> str:
    return "max" if bps >= UINT32_MAX else f"{bps / 10_000:.2f}x"


def _date(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def _report_state(row: PeriodRow) -> str:
    status = int(row.inputs.get("reportStatus", 0))
    if status == 1 and row.inputs.get("reportLate"):
        return "late"
    return _REPORT_STATUS.get(status, str(status))


def period_table(rows: list[PeriodRow], decimals: int) -> tuple[list[str], list[list[str]]]:
    """Column names and one row of strings per period close."""
    columns = [
        "period",
        "closed",
        "block",
        "report",
        "util",
        "uptime",
        "revenue (oracle)",
        "revenue (cash)",
        "debt service",
        "DSCR",
        "LTV / limit",
        "step",
        "senior",
        "junior",
        "breaches",
        "top-up",
        "fees",
        "sr interest",
        "jr interest",
        "principal",
        "reserve",
        "sweep",
        "equity",
        "trapped",
        "mismatches",
    ]
    out = []
    for row in rows:
        i, r, w = row.inputs, row.result, row.waterfall
        reserve_move = int(w["reserveAdded"]) - int(w["reserveDrawn"])
        reserve = (
            f"{reserve_move / 10**decimals:+,.2f} = {_money(int(w['reserveBalance']), decimals)}"
        )
        top_up = _money(int(row.top_up["shortfall"]), decimals) if row.top_up is not None else ""
        reported = int(i.get("reportStatus", 0)) == 1
        out.append(
            [
                str(row.period),
                _date(row.timestamp),
                str(row.block),
                _report_state(row),
                _pct(int(i["utilizationBps"])) if reported else "missed",
                _pct(int(i["uptimeBps"])) if reported else "missed",
                _money(int(i["revenueReported"]), decimals),
                _money(int(i["revenueCash"]), decimals),
                _money(int(i["debtService"]), decimals),
                _dscr(int(r["dscrBps"])),
                f"{_pct(int(r['ltvBps']))} / {_pct(int(r['ltvLimitBps']))}",
                f"{int(r['oldStepBps']):+d} -> {int(r['newStepBps']):+d}",
                _pct(row.senior_rate_bps),
                _pct(row.junior_rate_bps) if row.junior_rate_bps is not None else "",
                ", ".join(breach_names(int(r["breaches"]))) or "none",
                top_up,
                _money(int(w["fees"]), decimals),
                _money(int(w["seniorInterest"]), decimals),
                _money(int(w["juniorInterest"]), decimals),
                _money(int(w["seniorPrincipal"]) + int(w["juniorPrincipal"]), decimals),
                reserve,
                _money(int(w["sweep"]), decimals),
                _money(int(w["equity"]), decimals),
                _money(int(w["trapped"]), decimals),
                str(row.mismatches),
            ]
        )
    return columns, out


# ---------------------------------------------------------------------------
# What happens between (and after) the closes
# ---------------------------------------------------------------------------


@dataclass
class Happening:
    """An event outside the period closes: a cure, a default, a release, a withdrawal."""

    block: int
    timestamp: int
    after_period: int | None  # the last period closed before it (None: before the first)
    event: str  # Contract.Event
    short: str  # chart label
    what: str  # table text


def _who(address: Any) -> str:
    text = str(address)
    return text[:10] + "..." if len(text) > 12 else text


def _describe(event: dict[str, Any], decimals: int) -> tuple[str, str] | None:
    """(chart label, table text) of an event worth showing, else None."""
    a, m = event["args"], lambda key: _money(int(event["args"][key]), decimals)
    key = (event["contract"], event["event"])
    if key == ("Servicer", "TopUpCured"):
        return "cure", f"top-up cured: collateral {m('collateral')} >= {m('requiredCollateral')}"
    if key == ("Servicer", "DefaultDeclared"):
        return "default", (
            f"default declared: cure lapsed ({_date(int(a['deadline']))}), collateral "
            f"{m('collateral')} < {m('requiredCollateral')}"
        )
    if key == ("Servicer", "SteppedIn"):
        return "step-in", (
            f"trustee {_who(a['trustee'])} stepped in; cash collateral applied "
            f"{m('cashCollateralApplied')}"
        )
    if key == ("CollateralRegistry", "LiensTransferred"):
        return "liens", f"liens moved to the trustee {_who(a['trustee'])}"
    if key == ("Servicer", "CashCollateralPosted"):
        return "cash", f"{m('amount')} cash collateral posted by {_who(a['from'])}"
    if key == ("Servicer", "CapitalDisbursed"):
        return "capital", f"drawn capital {m('amount')} to the operator {_who(a['operator'])}"
    if key == ("Servicer", "TopUpRequired"):
        return "top-up", f"top-up required (defects): shortfall {m('shortfall')}"
    if key == ("Servicer", "DefectsRecorded"):
        return "defects", f"{a['added']} defect(s) recorded, {a['total']} in all"
    if key == ("Servicer", "NoteReleased"):
        return (
            "release",
            "collateral released (note repaid); cash collateral returned "
            + m("cashCollateralReturned"),
        )
    if key == ("Servicer", "WoundUp"):
        return "wound up", (
            f"final split of {m('cashIn')}: fees {m('fees')}, senior {m('seniorInterest')} interest"
            f" + {m('seniorPrincipal')} principal, junior {m('juniorInterest')} + "
            f"{m('juniorPrincipal')}, operator {m('residual')}"
        )
    if key == ("CollateralRegistry", "NoteReleased"):
        return "liens freed", f"liens released by {_who(a['by'])}"
    if key == ("NoteTranche", "WrittenOff"):
        return "write-off", (
            f"tranche {_who(event['address'])} written off: principal lost {m('principalLost')},"
            f" interest lost {m('interestLost')}"
        )
    if key == ("Servicer", "Withdrawn"):
        kind = "fees" if a["fees"] else "equity or recovery"
        return "withdrawal", f"{m('amount')} withdrawn by {_who(a['to'])} ({kind})"
    if key == ("NoteTranche", "PrincipalRedeemed"):
        return "redeem", f"{m('amount')} principal redeemed by {_who(a['holder'])}"
    if key == ("NoteTranche", "CouponClaimed"):
        return None  # every claim of every holder: the lender pages and exports list them
    if key in (("Servicer", "LateCashTrapped"), ("Servicer", "LateCashSettled")):
        return "late cash", f"{m('amount')} late cash ({event['event']})"
    return None


def happenings(
    events: list[dict[str, Any]], rows: list[PeriodRow], note: NoteSummary, decimals: int
) -> list[Happening]:
    """The note's events outside its closes, each placed after the last close before it."""
    addresses = {note.servicer.lower(), *(t.lower() for t in note.tranches)}
    close_txs = {row.tx for row in rows}
    closes = sorted((row.block, row.period) for row in rows)
    out = []
    for event in events:
        mine = str(event.get("address", "")).lower() in addresses
        if event["contract"] == "CollateralRegistry":
            mine = int(event["args"].get("noteId", -1)) == note.note_id
        if not mine or event.get("tx") in close_txs:
            continue
        described = _describe(event, decimals)
        if described is None:
            continue
        before = [period for block, period in closes if block <= int(event["block"])]
        out.append(
            Happening(
                block=int(event["block"]),
                timestamp=int(event["timestamp"]),
                after_period=before[-1] if before else None,
                event=f"{event['contract']}.{event['event']}",
                short=described[0],
                what=described[1],
            )
        )
    return out


_HAPPENING_COLUMNS = ["block", "date", "when", "event", "what"]


def _happening_rows(found: list[Happening]) -> list[list[str]]:
    return [
        [
            str(h.block),
            _date(h.timestamp),
            "before the first close"
            if h.after_period is None
            else f"after period {h.after_period}",
            h.event,
            h.what,
        ]
        for h in found
    ]


# ---------------------------------------------------------------------------
# Charts
# ---------------------------------------------------------------------------


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


_HIGH, _MID, _LOW, _MISSED = "#27ae60", "#7f8c8d", "#c0392b", "#f0b27a"


def _mark_happenings(ax: Any, found: list[Happening], periods: list[int]) -> None:
    """A dotted line between the closes for each cure, default, release or withdrawal,
    labelled; several at the same place share one line."""
    at: dict[float, list[str]] = {}
    for h in found:
        if h.short in ("redeem",):
            continue
        x = (h.after_period + 0.5) if h.after_period is not None else periods[0] - 0.5
        labels = at.setdefault(x, [])
        if h.short not in labels:
            labels.append(h.short)
    for i, (x, labels) in enumerate(at.items()):
        label = "event between closes (named at the line)" if i == 0 else None
        ax.axvline(x, color="#34495e", linestyle=":", linewidth=1, label=label)
        ax.text(
            x,
            0.98,
            ", ".join(labels),
            transform=ax.get_xaxis_transform(),
            rotation=90,
            va="top",
            ha="right",
            fontsize=7,
            color="#34495e",
        )


def utilization_bars(
    rows: list[PeriodRow], terms: dict[str, Any]
) -> tuple[list[str], list[tuple[str, str]]]:
    """Each period's bar colour, and a legend entry (colour, label) for every colour used:
    at or above the step-down threshold, between, below the step-up threshold, missed."""
    down, up = int(terms["stepDownUtilBps"]) / 100, int(terms["stepUpUtilBps"]) / 100
    colours = []
    for row in rows:
        u = int(row.inputs["utilizationBps"]) / 100
        missed = int(row.inputs["reportStatus"]) != 1
        colours.append(_MISSED if missed else _LOW if u < up else _HIGH if u >= down else _MID)
    labels = {
        _HIGH: f"utilization >= {down:g}% (counts to the step-down)",
        _MID: f"utilization {up:g}% to {down:g}%",
        _LOW: f"utilization < {up:g}% (step-up, top-up)",
        _MISSED: "report missed (no quorum by the heartbeat)",
    }
    return colours, [(colour, label) for colour, label in labels.items() if colour in colours]


def clipped_points(periods: list[int], values: list[int], top: int) -> list[tuple[int, int]]:
    """(period, value) of the values above `top`: drawn at the top, marked and labelled."""
    return [(p, v) for p, v in zip(periods, values, strict=True) if v > top]


def charts(
    note: NoteSummary,
    rows: list[PeriodRow],
    decimals: int,
    found: list[Happening] | None = None,
) -> list[Chart]:
    """The three charts of one note (empty without period closes); `found`: the events
    between and after the closes, drawn as labelled dotted lines."""
    if not rows:
        return []
    found = found or []
    terms = note.covenant_terms
    periods = [row.period for row in rows]
    prefix = f"note{note.note_id}"

    # 1. Utilization vs coupon rate
    fig, ax = plt.subplots(figsize=(9, 4))
    utilization = [int(row.inputs["utilizationBps"]) / 100 for row in rows]
    missed = [int(r.inputs["reportStatus"]) != 1 for r in rows]
    down, up = int(terms["stepDownUtilBps"]) / 100, int(terms["stepUpUtilBps"]) / 100
    colours, legend_bars = utilization_bars(rows, terms)
    ax.bar(periods, utilization, color=colours, alpha=0.55)
    for period, miss in zip(periods, missed, strict=True):
        if miss:  # no report: a hatched full-height bar, labelled, instead of a 0 % one
            ax.bar(period, 100, color="none", edgecolor=_MISSED, hatch="//", linewidth=1)
            ax.text(period, 50, "missed", rotation=90, ha="center", va="center", fontsize=8)
    bar_handles = [
        Patch(facecolor=colour, alpha=0.55, label=label, hatch="//" if colour == _MISSED else None)
        for colour, label in legend_bars
    ]
    ax.axhline(down, color=_HIGH, linestyle="--", linewidth=1, label=f"step-down at {down:g}%")
    ax.axhline(up, color=_LOW, linestyle="--", linewidth=1, label=f"step-up below {up:g}%")
    _mark_happenings(ax, found, periods)
    ax.set_xlabel("period")
    ax.set_ylabel("utilization (%)")
    ax.set_ylim(0, 105)
    rates = ax.twinx()
    rates.step(
        periods,
        [r.senior_rate_bps / 100 for r in rows],
        where="post",
        color="#1f4e79",
        label="senior coupon",
    )
    if rows[0].junior_rate_bps is not None:
        rates.step(
            periods,
            [(r.junior_rate_bps or 0) / 100 for r in rows],
            where="post",
            color="#8e44ad",
            label="junior coupon",
        )
    rates.set_ylabel("coupon after the close (%)")
    handles = ax.get_legend_handles_labels()
    more = rates.get_legend_handles_labels()
    ax.legend(
        bar_handles + handles[0] + more[0],
        [h.get_label() for h in bar_handles] + handles[1] + more[1],
        loc="upper left",
        bbox_to_anchor=(1.08, 1.0),
        fontsize=8,
    )
    ax.set_title(f"Note {note.note_id}: utilization vs coupon rate")
    first = Chart(f"{prefix}-utilization-coupon", "Utilization vs coupon rate", _png(fig))

    # 2. DSCR and LTV against their thresholds
    fig, (ax_d, ax_l) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    raw_dscr = [int(r.result["dscrBps"]) for r in rows]
    dscr = [min(v / 10_000, _MAX_DSCR_SHOWN) for v in raw_dscr]
    ax_d.plot(periods, dscr, marker="o", color="#1f4e79", label="DSCR")
    clipped = clipped_points(periods, raw_dscr, int(_MAX_DSCR_SHOWN * 10_000))
    if clipped:  # drawn at the top: marked, and their value written next to them
        ax_d.plot(
            [p for p, _ in clipped],
            [_MAX_DSCR_SHOWN] * len(clipped),
            linestyle="none",
            marker="^",
            markersize=9,
            color="#e67e22",
            label=f"above {_MAX_DSCR_SHOWN:g}x: drawn at the top (value written)",
        )
        for p, v in clipped:
            ax_d.annotate(
                _dscr(v),
                (p, _MAX_DSCR_SHOWN),
                textcoords="offset points",
                xytext=(0, -14),
                ha="center",
                fontsize=7,
            )
        ax_d.set_ylim(top=_MAX_DSCR_SHOWN * 1.1)
    _mark_happenings(ax_d, found, periods)
    ax_d.axhline(
        int(terms["dscrMinBps"]) / 10_000,
        color="#c0392b",
        linestyle="--",
        label="minimum (sweep below)",
    )
    ax_d.set_ylabel(f"DSCR (x, shown up to {_MAX_DSCR_SHOWN:g})")
    ax_d.legend(loc="upper right", fontsize=8)
    ax_d.set_title(f"Note {note.note_id}: DSCR and LTV against their thresholds")
    raw_ltv = [int(r.result["ltvBps"]) for r in rows]
    ax_l.plot(
        periods,
        [min(v, _MAX_LTV_SHOWN_BPS) / 100 for v in raw_ltv],
        marker="o",
        color="#1f4e79",
        label="LTV",
    )
    over = clipped_points(periods, raw_ltv, _MAX_LTV_SHOWN_BPS)
    if over:
        ax_l.plot(
            [p for p, _ in over],
            [_MAX_LTV_SHOWN_BPS / 100] * len(over),
            linestyle="none",
            marker="^",
            markersize=9,
            color="#e67e22",
            label=f"above {_MAX_LTV_SHOWN_BPS / 100:g}%: drawn at the top (value written)",
        )
        for p, v in over:
            ax_l.annotate(
                _pct(v),
                (p, _MAX_LTV_SHOWN_BPS / 100),
                textcoords="offset points",
                xytext=(0, -14),
                ha="center",
                fontsize=7,
            )
    _mark_happenings(ax_l, found, periods)
    ax_l.step(
        periods,
        [int(r.result["ltvLimitBps"]) / 100 for r in rows],
        where="mid",
        color="#c0392b",
        linestyle="--",
        label="LTV limit (tightened while stepped up)",
    )
    ax_l.axhline(int(terms["maxLtvBps"]) / 100, color="#7f8c8d", linestyle=":", label="maximum LTV")
    ax_l.set_ylabel("LTV (%)")
    ax_l.set_xlabel("period")
    ax_l.legend(loc="lower left", fontsize=8)
    second = Chart(f"{prefix}-dscr-ltv", "DSCR and LTV against thresholds", _png(fig))

    # 3. Cumulative cash by waterfall bucket
    fig, ax = plt.subplots(figsize=(9, 4.5))
    scale = 10**decimals
    series = []
    for key, _ in _BUCKETS:
        total = 0
        cumulative = []
        for row in rows:
            total += int(row.waterfall[key])
            cumulative.append(total / scale)
        series.append(cumulative)
    ax.stackplot(periods, *series, labels=[label for _, label in _BUCKETS], alpha=0.8)
    ax.plot(
        periods,
        [int(r.waterfall["trapped"]) / scale for r in rows],
        color="black",
        linestyle="--",
        label="trapped (held)",
    )
    ax.plot(
        periods,
        [int(r.waterfall["reserveBalance"]) / scale for r in rows],
        color="#7f8c8d",
        linestyle=":",
        label="reserve balance",
    )
    ax.set_xlabel("period")
    ax.set_ylabel("cumulative cash (stablecoin units)")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))
    ax.set_title(f"Note {note.note_id}: cumulative cash by waterfall bucket")
    ax.legend(loc="upper left", fontsize=8, ncol=2)
    third = Chart(f"{prefix}-waterfall", "Cumulative cash by waterfall bucket", _png(fig))
    return [first, second, third]


# ---------------------------------------------------------------------------
# Markdown and HTML
# ---------------------------------------------------------------------------


def _summary(result: ReplayResult, source: str) -> list[tuple[str, str]]:
    h = result.header
    return [
        ("source", source),
        ("chain id", str(h.get("chain_id"))),
        ("blocks", f"{h.get('from_block')}..{h.get('to_block')}"),
        ("head hash", str(h.get("head_hash", ""))),
        ("events", f"{result.events:,}"),
        ("transactions", f"{result.transactions:,}"),
        ("period closes", str(result.closes)),
        ("fields and rules checked", f"{result.fields_checked:,}"),
        ("mismatches", str(len(result.mismatches))),
        ("verdict", "PASS: the model agrees with every recorded decision" if result.ok else "FAIL"),
    ]


def _duration(seconds: int) -> str:
    days, rest = divmod(seconds, 86_400)
    if rest == 0:
        return f"{days:,} day{'s' if days != 1 else ''}"
    return f"{seconds / 3_600:,.1f} hours"


def _periods(count: int) -> str:
    return f"{count} consecutive period{'s' if count != 1 else ''}"


# (field, what it means, its value in human units) for each covenant term
_COVENANT_TERMS: tuple[tuple[str, str, Any], ...] = (
    ("dscrMinBps", "DSCR minimum (below: sweep, equity blocked)", lambda v, d: _dscr(v)),
    ("maxLtvBps", "maximum LTV (above: collateral top-up)", lambda v, d: _pct(v)),
    ("lowUtilMaxLtvBps", "LTV limit while the coupon is stepped up", lambda v, d: _pct(v)),
    ("uptimeSlaBps", "uptime SLA", lambda v, d: _pct(v)),
    ("stepDownUtilBps", "step-down: utilization at or above", lambda v, d: _pct(v)),
    ("stepDownPeriods", "step-down: for", lambda v, d: _periods(v)),
    ("stepDownBps", "step-down: coupon change", lambda v, d: f"{v:+d} bps ({v / 100:+.2f}%)"),
    ("stepUpUtilBps", "step-up: utilization below", lambda v, d: _pct(v)),
    ("stepUpPeriods", "step-up: for", lambda v, d: _periods(v)),
    (
        "stepUpBps",
        "step-up: coupon change (and a top-up)",
        lambda v, d: f"{v:+d} bps ({v / 100:+.2f}%)",
    ),
    ("sweepShareBps", "cash sweep to senior principal", lambda v, d: f"{_pct(v)} of the excess"),
    ("reserveMonths", "debt-service reserve target", lambda v, d: f"{v} months of senior interest"),
    ("curePeriod", "cure period of a top-up", lambda v, d: _duration(v)),
    ("feePerPeriod", "servicing and trustee fees", lambda v, d: f"{_money(v, d)} per period"),
)


def _terms_rows(note: NoteSummary, decimals: int = 6) -> list[list[str]]:
    """The covenant terms in human units, with the contract's field and raw value."""
    terms = note.covenant_terms
    rows = []
    for key, meaning, shown in _COVENANT_TERMS:
        if key in terms:
            value = int(terms[key])
            rows.append([meaning, shown(value, decimals), f"{key} = {terms[key]}"])
    rows += [[key, str(value), key] for key, value in terms.items() if key not in _TERM_KEYS]
    return rows


_TERM_KEYS = frozenset(key for key, _, _ in _COVENANT_TERMS)
_TERMS_COLUMNS = ["term", "value", "field (raw)"]
_TRANCHE_COLUMNS = [
    "tranche",
    "seniority",
    "size",
    "minimum subscription",
    "subscription window (UTC)",
    "maturity (UTC)",
    "coupon",
    "floor / cap",
    "collateral at drawdown",
]


def _tranche_rows(note: NoteSummary, decimals: int) -> list[list[str]]:
    """Each tranche's terms in human units (from `TrancheInitialised` in the header)."""
    rows = []
    for address, terms in zip(note.tranches, note.tranche_terms, strict=False):
        t = {k: int(v) for k, v in terms.items()}
        seniority = {0: "senior", 1: "junior"}.get(t["seniority"], str(t["seniority"]))
        rows.append(
            [
                address,
                seniority,
                _money(t["maxSize"], decimals),
                _money(t["minSubscription"], decimals),
                f"{_date(t['subscriptionStart'])} to {_date(t['subscriptionEnd'])}",
                _date(t["maturity"]),
                f"{_pct(t['referenceRateBps'])} reference + {t['spreadBps']} bps spread "
                f"= {_pct(t['referenceRateBps'] + t['spreadBps'])} (+ covenant step)",
                f"{_pct(t['floorRateBps'])} / {_pct(t['capRateBps'])}",
                f"{_pct(t['minCollateralRatioBps'])} of principal",
            ]
        )
    return rows


def _mismatch_rows(mismatches: list[Mismatch]) -> list[list[str]]:
    return [
        [
            str(m.block),
            m.tx,
            "" if m.log_index is None else str(m.log_index),
            "" if m.line is None else str(m.line),
            f"{m.contract}.{m.event}",
            m.field,
            str(m.expected),
            str(m.recorded),
        ]
        for m in mismatches
    ]


_MISMATCH_COLUMNS = ["block", "tx", "log", "line", "event", "field", "expected", "recorded"]


def _md_table(columns: list[str], rows: list[list[str]]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(
    result: ReplayResult,
    chart_files: dict[str, str],
    *,
    source: str,
    decimals: int = 6,
    max_mismatches: int = 500,
    found_by_note: dict[int, list[Happening]] | None = None,
) -> str:
    parts = ["# gpucredit audit replay", ""]
    parts.append(_md_table(["", ""], [list(r) for r in _summary(result, source)]))
    for note in result.notes:
        rows = [r for r in result.periods if r.note_id == note.note_id]
        parts += ["", f"## Note {note.note_id}", ""]
        parts.append(
            f"Servicer `{note.servicer}`, tranches " + ", ".join(f"`{t}`" for t in note.tranches)
        )
        parts += ["", "Covenant terms (from the export header):", ""]
        parts.append(_md_table(_TERMS_COLUMNS, _terms_rows(note, decimals)))
        parts += ["", "Tranche terms:", ""]
        parts.append(_md_table(_TRANCHE_COLUMNS, _tranche_rows(note, decimals)))
        parts += ["", "### Periods", ""]
        columns, table = period_table(rows, decimals)
        parts.append(_md_table(columns, table) if table else "No period was closed.")
        found = (found_by_note or {}).get(note.note_id, [])
        parts += ["", "### Between and after the closes", ""]
        parts.append(
            _md_table(_HAPPENING_COLUMNS, _happening_rows(found))
            if found
            else "No cure, default, release or withdrawal outside the closes."
        )
        for name, title in (
            (f"note{note.note_id}-utilization-coupon", "Utilization vs coupon rate"),
            (f"note{note.note_id}-dscr-ltv", "DSCR and LTV against thresholds"),
            (f"note{note.note_id}-waterfall", "Cumulative cash by waterfall bucket"),
        ):
            if name in chart_files:
                parts += ["", f"![{title}]({chart_files[name]})"]
    parts += ["", "## Mismatches", ""]
    if result.mismatches:
        shown = result.mismatches[:max_mismatches]
        parts.append(_md_table(_MISMATCH_COLUMNS, _mismatch_rows(shown)))
        if len(result.mismatches) > len(shown):
            parts.append(
                f"\n... and {len(result.mismatches) - len(shown)} more (see the JSON output)."
            )
    else:
        parts.append("None: every recorded output equals the model's.")
    return "\n".join(parts) + "\n"


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#222}
table{border-collapse:collapse;margin:0.5rem 0 1.5rem;font-size:0.85rem}
th,td{border:1px solid #ccc;padding:0.25rem 0.5rem;text-align:right;white-space:nowrap}
th{background:#f3f5f7}
td.l,th.l{text-align:left}
.pass{color:#1e8449;font-weight:bold}.fail{color:#c0392b;font-weight:bold}
.bad{background:#fdecea}
img{max-width:100%;display:block;margin:0.5rem 0 1.5rem}
code{font-size:0.85rem}
"""


def _html_table(
    columns: list[str], rows: list[list[str]], left: int = 0, bad_col: int | None = None
) -> str:
    out = ["<table><thead><tr>"]
    out += [
        f'<th class="{"l" if i < left else ""}">{html.escape(c)}</th>'
        for i, c in enumerate(columns)
    ]
    out.append("</tr></thead><tbody>")
    for row in rows:
        bad = bad_col is not None and row[bad_col] not in ("0", "")
        out.append(f'<tr class="{"bad" if bad else ""}">')
        out += [
            f'<td class="{"l" if i < left else ""}">{html.escape(c)}</td>'
            for i, c in enumerate(row)
        ]
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def render_html(
    result: ReplayResult,
    note_charts: dict[int, list[Chart]],
    *,
    source: str,
    decimals: int = 6,
    max_mismatches: int = 2_000,
    found_by_note: dict[int, list[Happening]] | None = None,
) -> str:
    verdict = '<span class="pass">PASS</span>' if result.ok else '<span class="fail">FAIL</span>'
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<title>gpucredit audit replay</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>gpucredit audit replay: {verdict}</h1>",
        _html_table(["", ""], [list(r) for r in _summary(result, source)], left=2),
    ]
    for note in result.notes:
        rows = [r for r in result.periods if r.note_id == note.note_id]
        parts.append(f"<h2>Note {note.note_id}</h2>")
        tranches = ", ".join(f"<code>{html.escape(t)}</code>" for t in note.tranches)
        parts.append(
            f"<p>Servicer <code>{html.escape(note.servicer)}</code>, tranches {tranches}</p>"
        )
        parts.append("<h3>Covenant terms</h3>")
        parts.append(_html_table(_TERMS_COLUMNS, _terms_rows(note, decimals), left=3))
        parts.append("<h3>Tranche terms</h3>")
        parts.append(_html_table(_TRANCHE_COLUMNS, _tranche_rows(note, decimals), left=2))
        parts.append("<h3>Periods</h3>")
        columns, table = period_table(rows, decimals)
        parts.append(
            _html_table(columns, table, left=0, bad_col=len(columns) - 1)
            if table
            else "<p>No period was closed.</p>"
        )
        found = (found_by_note or {}).get(note.note_id, [])
        parts.append("<h3>Between and after the closes</h3>")
        parts.append(
            _html_table(_HAPPENING_COLUMNS, _happening_rows(found), left=5)
            if found
            else "<p>No cure, default, release or withdrawal outside the closes.</p>"
        )
        for chart in note_charts.get(note.note_id, []):
            data = base64.b64encode(chart.png).decode()
            parts.append(f"<h3>{html.escape(chart.title)}</h3>")
            parts.append(
                f'<img alt="{html.escape(chart.title)}" src="data:image/png;base64,{data}">'
            )
    parts.append("<h2>Mismatches</h2>")
    if result.mismatches:
        shown = result.mismatches[:max_mismatches]
        parts.append(
            _html_table(_MISMATCH_COLUMNS, _mismatch_rows(shown), left=len(_MISMATCH_COLUMNS))
        )
        if len(result.mismatches) > len(shown):
            parts.append(f"<p>... and {len(result.mismatches) - len(shown)} more.</p>")
    else:
        parts.append("<p>None: every recorded output equals the model's.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(
    result: ReplayResult,
    out_dir: Path,
    *,
    source: str,
    decimals: int = 6,
    events: list[dict[str, Any]] | None = None,
) -> dict[str, Path]:
    """Writes audit.md (+ charts/*.png) and a self-contained audit.html into `out_dir`.

    `events`: the replayed events (an export's or an archive's); with them the report
    also shows what happened between and after the closes (cures, default, step-in,
    release, wind-down, write-offs, withdrawals, redemptions), in a table and on the charts.
    """
    out_dir = Path(out_dir)
    chart_dir = out_dir / "charts"
    chart_dir.mkdir(parents=True, exist_ok=True)
    note_charts: dict[int, list[Chart]] = {}
    chart_files: dict[str, str] = {}
    found_by_note: dict[int, list[Happening]] = {}
    for note in result.notes:
        rows = [r for r in result.periods if r.note_id == note.note_id]
        found = happenings(events or [], rows, note, decimals)
        found_by_note[note.note_id] = found
        made = charts(note, rows, decimals, found)
        note_charts[note.note_id] = made
        for chart in made:
            (chart_dir / f"{chart.name}.png").write_bytes(chart.png)
            chart_files[chart.name] = f"charts/{chart.name}.png"
    md = out_dir / "audit.md"
    md.write_text(
        render_markdown(
            result, chart_files, source=source, decimals=decimals, found_by_note=found_by_note
        )
    )
    page = out_dir / "audit.html"
    page.write_text(
        render_html(
            result, note_charts, source=source, decimals=decimals, found_by_note=found_by_note
        )
    )
    return {"markdown": md, "html": page, "charts": chart_dir}
