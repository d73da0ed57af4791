"""`risk price` writes a term sheet `issuer create-note` accepts; `stress`, `portfolio` run."""

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from gpucredit.cli import app
from gpucredit.termsheet import load_termsheet

TERMSHEET = "examples/termsheet.yaml"


def test_price_writes_a_term_sheet_that_meets_the_targets_and_validates(tmp_path):
    out = tmp_path / "priced.yaml"
    res = CliRunner().invoke(
        app,
        ["risk", "price", TERMSHEET, "-o", str(out), "--paths", "800", "--workers", "1", "--json"],
    )
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout)
    assert r["targets_met"] == {"senior": True, "junior": True}
    sheet = load_termsheet(out)  # the parser `issuer create-note` uses
    assert [t.spread for t in sheet.tranches] == r["spreads_bps"]
    assert all(
        t.min_collateral_ratio == r["min_collateral_ratio_pct"] * 100 for t in sheet.tranches
    )
    assert sheet.steps.up.utilization_below == r["step_up_utilization_bps"]
    valid = CliRunner().invoke(app, ["issuer", "validate", str(out)])
    assert valid.exit_code == 0, valid.output
    original = yaml.safe_load(Path(TERMSHEET).read_text())
    assert yaml.safe_load(out.read_text())["name"] == original["name"]


def test_stress_reports_every_scenario_the_tornado_and_break_evens(tmp_path):
    res = CliRunner().invoke(
        app,
        [
            "risk",
            "stress",
            TERMSHEET,
            "--paths",
            "400",
            "--workers",
            "1",
            "--json",
            "--report",
            str(tmp_path / "s"),
        ],
    )
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout)
    assert set(r["scenarios"]) == {
        "base",
        "rent-deflation-40",
        "generation-shock",
        "miner-double-leverage",
        "liquidity-vacuum",
    }
    assert len(r["tornado"]["drivers"]) == 8
    assert {x["tranche"] for x in r["break_even"]["rent_drift_per_year"]} == {0, 1}
    assert (tmp_path / "s.html").read_text().count("<svg") >= 8


def test_portfolio_json(tmp_path):
    res = CliRunner().invoke(
        app,
        ["risk", "portfolio", TERMSHEET, TERMSHEET, "--paths", "500", "--workers", "1", "--json"],
    )
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout)
    assert len(r["p_defaults"]) == 3 and abs(sum(r["p_defaults"]) - 1) < 1e-9
