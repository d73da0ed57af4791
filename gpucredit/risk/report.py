"""Risk reports: Markdown and one self-contained HTML file with inline SVG charts."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

W, H, PAD = 560, 220, 36
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def _scale(values: list[float], lo: float | None = None, hi: float | None = None):
    lo = min(values) if lo is None else lo
    hi = max(values) if hi is None else hi
    span = (hi - lo) or 1.0
    return lambda v: H - PAD - (v - lo) / span * (H - 2 * PAD), lo, hi


def _frame(title: str, body: str, lo: float, hi: float, xlabel: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
        f'viewBox="0 0 {W} {H}" role="img" aria-label="{html.escape(title)}">'
        f'<rect width="{W}" height="{H}" fill="white"/>'
        f'<text x="{PAD}" y="16" font-size="13" font-family="sans-serif">'
        f"{html.escape(title)}</text>"
        f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - 8}" y2="{H - PAD}" stroke="#999"/>'
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{H - PAD}" stroke="#999"/>'
        f'<text x="2" y="{PAD + 4}" font-size="10" font-family="sans-serif">{hi:.3g}</text>'
        f'<text x="2" y="{H - PAD}" font-size="10" font-family="sans-serif">{lo:.3g}</text>'
        f'<text x="{W // 2}" y="{H - 8}" font-size="10" font-family="sans-serif">'
        f"{html.escape(xlabel)}</text>{body}</svg>"
    )


def _x(i: int, n: int) -> float:
    return PAD + i * (W - PAD - 8) / max(n - 1, 1)


def fan_svg(title: str, fan: dict[str, list[float]], scale: float = 1.0) -> str:
    """Percentile bands (5-95, 25-75) and the median, by month."""
    f = {k: [v * scale for v in vs] for k, vs in fan.items()}
    n = len(f["p50"])
    y, lo, hi = _scale(f["p5"] + f["p95"])

    def band(a: str, b: str, colour: str) -> str:
        top = [f"{_x(i, n):.1f},{y(f[b][i]):.1f}" for i in range(n)]
        bottom = [f"{_x(i, n):.1f},{y(f[a][i]):.1f}" for i in reversed(range(n))]
        return f'<polygon points="{" ".join(top + bottom)}" fill="{colour}" opacity="0.35"/>'

    median = " ".join(f"{_x(i, n):.1f},{y(f['p50'][i]):.1f}" for i in range(n))
    body = (
        band("p5", "p95", "#9ecae1")
        + band("p25", "p75", "#3182bd")
        + f'<polyline points="{median}" fill="none" stroke="#08306b" stroke-width="2"/>'
    )
    return _frame(title, body, lo, hi, "month")


def lines_svg(title: str, series: dict[str, list[float]]) -> str:
    """Several series by month, with a legend."""
    values = [v for s in series.values() for v in s] or [0.0]
    y, lo, hi = _scale(values, 0.0, max(values) or 1.0)
    body = ""
    for k, (name, s) in enumerate(series.items()):
        colour = COLOURS[k % len(COLOURS)]
        pts = " ".join(f"{_x(i, len(s)):.1f},{y(v):.1f}" for i, v in enumerate(s))
        body += f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="1.5"/>'
        body += (
            f'<text x="{W - 150}" y="{30 + 12 * k}" font-size="10" fill="{colour}" '
            f'font-family="sans-serif">{html.escape(name)}</text>'
        )
    return _frame(title, body, lo, hi, "month")


def histogram_svg(title: str, edges: list[float], counts: list[int]) -> str:
    total = sum(counts) or 1
    shares = [c / total for c in counts]
    y, lo, hi = _scale(shares, 0.0, max(shares) or 1.0)
    n = len(counts)
    width = (W - PAD - 8) / n
    body = ""
    for i, s in enumerate(shares):
        top = y(s)
        body += (
            f'<rect x="{PAD + i * width:.1f}" y="{top:.1f}" width="{width - 1:.1f}" '
            f'height="{H - PAD - top:.1f}" fill="#d62728"><title>loss {edges[i]:.0%}-'
            f"{edges[i + 1]:.0%}: {s:.2%}</title></rect>"
        )
    return _frame(title, body, lo, hi, "loss, share of principal (0 to 100 %)")


def tornado_svg(title: str, rows: list[tuple[str, float, float]], base: float) -> str:
    """Horizontal bars: the metric at the low and the high value of each driver."""
    values = [v for _, a, b in rows for v in (a, b)] + [base]
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    left = 190
    height = max(H, 40 + 22 * len(rows))

    def x(v: float) -> float:
        return left + (v - lo) / span * (W - left - 20)

    body = f'<line x1="{x(base):.1f}" y1="24" x2="{x(base):.1f}" y2="{height - 10}" stroke="#333"/>'
    for k, (name, a, b) in enumerate(rows):
        top = 30 + 22 * k
        x0, x1 = sorted((x(a), x(b)))
        body += (
            f'<rect x="{x0:.1f}" y="{top}" width="{max(x1 - x0, 1):.1f}" height="16" '
            f'fill="#3182bd"/><text x="4" y="{top + 12}" font-size="10" '
            f'font-family="sans-serif">{html.escape(name)}</text>'
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" '
        f'viewBox="0 0 {W} {height}" role="img" aria-label="{html.escape(title)}">'
        f'<rect width="{W}" height="{height}" fill="white"/>'
        f'<text x="4" y="16" font-size="13" font-family="sans-serif">{html.escape(title)} '
        f"(base {base:.2%}, range {lo:.2%} to {hi:.2%})</text>{body}</svg>"
    )


def _pct(x: float) -> str:
    return f"{x:.2%}"


def tranche_rows(r: dict[str, Any]) -> list[list[str]]:
    return [
        [
            t["name"],
            _pct(t["pd"]),
            _pct(t["lgd"]),
            _pct(t["el"]),
            _pct(t["var99"]),
            _pct(t["es99"]),
            _pct(t["irr_p5"]),
            _pct(t["irr_p50"]),
            _pct(t["irr_mean"]),
        ]
        for t in r["tranches"]
    ]


TRANCHE_HEAD = ["tranche", "PD", "LGD", "EL", "VaR 99%", "ES 99%", "IRR p5", "IRR p50", "IRR mean"]


def markdown(r: dict[str, Any], title: str) -> str:
    lines = [
        f"# {title}",
        "",
        f"Scenario `{r['scenario']}`, {r['paths']:,} paths, {r['term_periods']} periods to "
        f"maturity ({r['periods']} simulated). Event of default within the term: "
        f"{_pct(r['pd_event_of_default'])}.",
        "",
        "PD: probability that the tranche does not get all its principal back; LGD: mean loss "
        "given that; EL: mean loss; VaR/ES: 99 % quantile and tail mean of the loss (shares of "
        "principal); IRR: the lender's annualised return.",
        "",
        "| " + " | ".join(TRANCHE_HEAD) + " |",
        "|" + "---|" * len(TRANCHE_HEAD),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in tranche_rows(r)]
    lines += ["", "## Covenant events by month (probability)", ""]
    events = r["events_by_month"]
    months = len(next(iter(events.values())))
    lines.append("| event | " + " | ".join(str(m + 1) for m in range(months)) + " |")
    lines.append("|---|" + "---|" * months)
    for name, probs in events.items():
        lines.append(f"| {name} | " + " | ".join(f"{p:.1%}" for p in probs) + " |")
    inputs = r.get("inputs")
    if inputs:
        lines += [
            "",
            f"## Inputs: `{inputs['termsheet']}`, seed {inputs['seed']}",
            "",
            "| parameter | value | source |",
            "|---|---|---|",
        ]
        lines += [f"| {k} | {v} | {src} |" for k, v, src in parameters(inputs["scenario"])]
    return "\n".join(lines) + "\n"


def parameters(scenario: dict[str, Any]) -> list[tuple[str, Any, str]]:
    """(dotted name, value, source) of every scenario parameter."""
    out = []
    for section, body in scenario.items():
        if not isinstance(body, dict):
            continue
        for name, p in body.items():
            out.append((f"{section}.{name}", p["value"], p["source"]))
    return out


def html_report(r: dict[str, Any], title: str, extra_svgs: list[str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in TRANCHE_HEAD)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
        for row in tranche_rows(r)
    )
    charts = [
        fan_svg("DSCR (x), percentiles 5-25-50-75-95", r["fans"]["dscr"], 1 / 10_000),
        fan_svg("LTV (%), percentiles", r["fans"]["ltv"], 1 / 100),
        fan_svg("Senior coupon (%), percentiles", r["fans"]["senior_rate"], 1 / 100),
        lines_svg("Covenant events, probability by month", r["events_by_month"]),
    ]
    for t in r["tranches"]:
        edges, counts = t["loss_histogram"]
        charts.append(histogram_svg(f"Loss distribution, {t['name']}", edges, counts))
    charts += extra_svgs or []
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif;margin:2em}}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;"
        "text-align:right}svg{margin:8px;border:1px solid #eee}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>Scenario <code>{html.escape(r['scenario'])}</code>, "
        f"{r['paths']:,} paths; event of default within the term "
        f"{_pct(r['pd_event_of_default'])}.</p><table><tr>{head}</tr>{rows}</table>"
        + "".join(charts)
        + _inputs_html(r.get("inputs"))
        + "</body></html>"
    )


def _inputs_html(inputs: dict[str, Any] | None) -> str:
    if not inputs:
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td>"
        f"<td style='text-align:left'>{html.escape(src)}</td></tr>"
        for k, v, src in parameters(inputs["scenario"])
    )
    return (
        f"<h2>Inputs: {html.escape(inputs['termsheet'])}, seed {inputs['seed']}</h2>"
        f"<table><tr><th>parameter</th><th>value</th><th>source</th></tr>{rows}</table>"
    )


def write_reports(r: dict[str, Any], title: str, stem: Path, extra: list[str] | None = None):
    stem.parent.mkdir(parents=True, exist_ok=True)
    md, page = stem.with_suffix(".md"), stem.with_suffix(".html")
    md.write_text(markdown(r, title))
    page.write_text(html_report(r, title, extra))
    return md, page
