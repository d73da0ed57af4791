"""The audit report the demo writes (gpucredit/audit/report.py), on a synthetic history:
a missed period labelled as missed, a legend entry for every bar colour, DSCR points
above the chart's top marked, cures between closes shown, the terms in human units,
the release and the withdrawals included.

The charts are checked on the figures themselves (matplotlib objects captured
before they are rendered), not on the PNGs.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest
from harness import ensure_artifacts
from matplotlib.colors import to_hex

from gpucredit.audit import report
from gpucredit.audit.export import parse_lines, write_jsonl
from gpucredit.audit.replay import replay
from gpucredit.audit.synthetic import synthetic_history

UINT32_MAX = 2**32 - 1


@pytest.fixture(scope="module")
def history():
    ensure_artifacts("CollateralRegistry", "IdentityRegistry", "TelemetryOracle")
    ensure_artifacts("Servicer", "NoteTranche", "MockStablecoin")
    return synthetic_history(3_000, notes=2, periods=12, lenders=3, seed=11)


@pytest.fixture
def written(history, tmp_path, monkeypatch):
    """The report of the history, with one DSCR above the charts' top; the figures."""
    path = tmp_path / "events.jsonl"
    write_jsonl(history, path)
    loaded = parse_lines(path.read_text().splitlines())
    result = replay(loaded)
    first = [r for r in result.periods if r.note_id == result.notes[0].note_id]
    first[1].result["dscrBps"] = 73_000  # 7.3x: above the 5x the chart shows
    first[2].result["dscrBps"] = UINT32_MAX  # no debt service: "max"
    figures = []

    def keep(fig):
        figures.append(fig)
        return b"\x89PNG\r\n\x1a\n"

    monkeypatch.setattr(report, "_png", keep)
    paths = report.write_report(result, tmp_path / "out", source="synthetic", events=loaded.events)
    yield result, paths["markdown"].read_text(), paths["html"].read_text(), figures
    for fig in figures:
        plt.close(fig)


def missed_rows(result):
    return [r for r in result.periods if int(r.inputs["reportStatus"]) == 2]


def test_a_missed_period_is_labelled_missed(written):
    result, markdown, _, figures = written
    missed = missed_rows(result)
    assert missed, "the history has a missed report"
    for row in missed:
        line = next(
            line
            for line in markdown.splitlines()
            if line.startswith(f"| {row.period} | ") and f"| {row.block} |" in line
        )
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[3:6] == ["missed", "missed", "missed"], cells  # report, util, uptime
    # on the chart: a bar labelled "missed" at each missed period of the first note
    note = result.notes[0].note_id
    ax = figures[0].axes[0]
    labelled = {round(t.get_position()[0]) for t in ax.texts if t.get_text() == "missed"}
    assert labelled == {r.period for r in missed if r.note_id == note}


def test_the_legend_covers_every_bar_colour(written):
    _, _, _, figures = written
    for fig in figures[::3]:  # the utilization chart of each note
        ax = fig.axes[0]
        bars = {to_hex(p.get_facecolor()) for p in ax.patches if p.get_facecolor()[3] > 0}
        legend = fig.axes[0].get_legend() or fig.axes[1].get_legend()
        shown = {
            to_hex(h.get_facecolor())
            for h in legend.legend_handles
            if hasattr(h, "get_facecolor") and h.get_facecolor()[3] > 0
        }
        assert len(bars) >= 2 and bars <= shown, (bars, shown)


def test_dscr_points_above_the_top_are_marked_with_their_value(written):
    result, _, _, figures = written
    ax = figures[1].axes[0]  # DSCR of the first note
    first = [r for r in result.periods if r.note_id == result.notes[0].note_id]
    marked = [
        line
        for line in ax.get_lines()
        if line.get_marker() == "^" and "drawn at the top" in line.get_label()
    ]
    assert len(marked) == 1
    assert list(marked[0].get_xdata()) == [first[1].period, first[2].period]
    assert {"7.30x", "max"} <= {t.get_text() for t in ax.texts}


def test_cures_between_closes_release_and_withdrawals_are_shown(written, history):
    _, markdown, page, figures = written
    section = markdown.split("### Between and after the closes")[1]
    for shown in ("Servicer.TopUpCured", "Servicer.NoteReleased", "Servicer.Withdrawn"):
        assert shown in section and shown in page
    cures = sum(1 for e in history.events if e["event"] == "TopUpCured")
    withdrawals = sum(1 for e in history.events if e["event"] == "Withdrawn")
    assert markdown.count("Servicer.TopUpCured") == cures
    assert markdown.count("Servicer.Withdrawn") == withdrawals
    assert "after period" in section
    # and on the charts: a labelled line between the closes for each cure
    labels = " ".join(t.get_text() for fig in figures for t in fig.axes[0].texts)
    assert "cure" in labels and "release" in labels


def test_terms_are_in_human_units(written):
    _, markdown, page, _ = written
    for text in (
        "| DSCR minimum (below: sweep, equity blocked) | 1.25x | dscrMinBps = 12500 |",
        "| cure period of a top-up | 30 days |",
        "| maximum LTV (above: collateral top-up) | 75.00% |",
    ):
        assert text in markdown
    assert "Tranche terms" in markdown and "Tranche terms" in page
    assert "| senior |" in markdown and "reference +" in markdown
