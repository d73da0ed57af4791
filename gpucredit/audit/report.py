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
_MAX_DSCR_SHOWN = 5.0  # DSCR above this (or "no debt service") is drawn at the top


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
        out.append(
            [
                str(row.period),
                _date(row.timestamp),
                str(row.block),
                _report_state(row),
                _pct(int(i["utilizationBps"])),
                _pct(int(i["uptimeBps"])),
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
# Charts
# ---------------------------------------------------------------------------


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def charts(note: NoteSummary, rows: list[PeriodRow], decimals: int) -> list[Chart]:
    """The three charts of one note (empty without period closes)."""
    if not rows:
        return []
    terms = note.covenant_terms
    periods = [row.period for row in rows]
    prefix = f"note{note.note_id}"

    # 1. Utilization vs coupon rate
    fig, ax = plt.subplots(figsize=(9, 4))
    utilization = [int(row.inputs["utilizationBps"]) / 100 for row in rows]
    down, up = int(terms["stepDownUtilBps"]) / 100, int(terms["stepUpUtilBps"]) / 100
    colours = [
        "#c0392b"
        if u < up or int(r.inputs["reportStatus"]) != 1
        else "#27ae60"
        if u >= down
        else "#7f8c8d"
        for u, r in zip(utilization, rows, strict=True)
    ]
    ax.bar(periods, utilization, color=colours, alpha=0.55, label="utilization")
    ax.axhline(down, color="#27ae60", linestyle="--", linewidth=1, label=f"step-down at {down:g}%")
    ax.axhline(up, color="#c0392b", linestyle="--", linewidth=1, label=f"step-up below {up:g}%")
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
    ax.legend(handles[0] + more[0], handles[1] + more[1], loc="lower left", fontsize=8)
    ax.set_title(f"Note {note.note_id}: utilization vs coupon rate")
    first = Chart(f"{prefix}-utilization-coupon", "Utilization vs coupon rate", _png(fig))

    # 2. DSCR and LTV against their thresholds
    fig, (ax_d, ax_l) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    dscr = [min(int(r.result["dscrBps"]) / 10_000, _MAX_DSCR_SHOWN) for r in rows]
    ax_d.plot(periods, dscr, marker="o", color="#1f4e79", label="DSCR")
    ax_d.axhline(
        int(terms["dscrMinBps"]) / 10_000,
        color="#c0392b",
        linestyle="--",
        label="minimum (sweep below)",
    )
    ax_d.set_ylabel(f"DSCR (x, shown up to {_MAX_DSCR_SHOWN:g})")
    ax_d.legend(loc="upper right", fontsize=8)
    ax_d.set_title(f"Note {note.note_id}: DSCR and LTV against their thresholds")
    ax_l.plot(
        periods,
        [min(int(r.result["ltvBps"]), 20_000) / 100 for r in rows],
        marker="o",
        color="#1f4e79",
        label="LTV",
    )
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


def _terms_rows(note: NoteSummary) -> list[tuple[str, str]]:
    return [(k, str(v)) for k, v in note.covenant_terms.items()]


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
        parts.append(_md_table(["term", "value"], [list(r) for r in _terms_rows(note)]))
        parts += ["", "### Periods", ""]
        columns, table = period_table(rows, decimals)
        parts.append(_md_table(columns, table) if table else "No period was closed.")
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
        parts.append(_html_table(["term", "value"], [list(r) for r in _terms_rows(note)], left=1))
        parts.append("<h3>Periods</h3>")
        columns, table = period_table(rows, decimals)
        parts.append(
            _html_table(columns, table, left=0, bad_col=len(columns) - 1)
            if table
            else "<p>No period was closed.</p>"
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
    result: ReplayResult, out_dir: Path, *, source: str, decimals: int = 6
) -> dict[str, Path]:
    """Writes audit.md (+ charts/*.png) and a self-contained audit.html into `out_dir`."""
    out_dir = Path(out_dir)
    chart_dir = out_dir / "charts"
    chart_dir.mkdir(parents=True, exist_ok=True)
    note_charts: dict[int, list[Chart]] = {}
    chart_files: dict[str, str] = {}
    for note in result.notes:
        rows = [r for r in result.periods if r.note_id == note.note_id]
        made = charts(note, rows, decimals)
        note_charts[note.note_id] = made
        for chart in made:
            (chart_dir / f"{chart.name}.png").write_bytes(chart.png)
            chart_files[chart.name] = f"charts/{chart.name}.png"
    md = out_dir / "audit.md"
    md.write_text(render_markdown(result, chart_files, source=source, decimals=decimals))
    page = out_dir / "audit.html"
    page.write_text(render_html(result, note_charts, source=source, decimals=decimals))
    return {"markdown": md, "html": page, "charts": chart_dir}
