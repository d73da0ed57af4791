"""Statistical properties of `gpucredit risk`, fixed seeds."""

from fractions import Fraction
from math import ceil
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from gpucredit.cli import app
from gpucredit.risk import engine
from gpucredit.risk.analysis import KEEP, run_note
from gpucredit.risk.scenario import ScenarioError, load_scenario, scenario_from_data
from gpucredit.risk.simulate import EPOCH, build, deal_params, draw_factors, horizon
from gpucredit.termsheet import load_termsheet

TERMSHEET = "examples/termsheet.yaml"
BASE = Path("gpucredit/risk/scenarios/base.yaml")
YEAR = 365 * 86_400


def calm(s):
    """No shocks: flat rent, utilization fixed at 95 %, no incidents, launches or outages."""
    for dotted, value in (
        ("rent.drift_per_year", 0.0),
        ("rent.vol_per_year", 0.0),
        ("rent.initial_usd_per_gpu_hour", 12.0),
        ("utilization.mean", [0.95, 0.95, 0.95]),
        ("utilization.sd", [0.0, 0.0, 0.0]),
        ("uptime.incident_probability", 0.0),
        ("generation.launch_probability", 0.0),
        ("oracle.missed_report_probability", 0.0),
        ("contracts.take_or_pay_share", 0.0),
        ("fleet.gpus", 1_200),
    ):
        s = s.with_value(dotted, value)
    return s


def test_no_shock_95_percent_never_defaults_and_pays_the_closed_form_coupon():
    s = calm(load_scenario("base"))
    spec = load_termsheet(TERMSHEET).to_deal_spec(EPOCH)
    deal = deal_params(spec, s)
    r = run_note(deal, s, 2_000, seed=7, workers=1).as_dict()
    assert r["pd_event_of_default"] == 0
    assert [t["pd"] for t in r["tranches"]] == [0.0, 0.0]
    assert [t["el"] for t in r["tranches"]] == [0.0, 0.0]

    # closed form: each period's interest is the exact accrual on the scheduled
    # outstanding, at 430 + spread until the third 95 % period, 200 bps less after
    _, periods = horizon(deal, s)
    rng = np.random.default_rng(1)
    factors = draw_factors(s, 50, periods, rng)
    paths, operator, _ = build(deal, s, factors, rng)
    run = engine.run(deal, paths, keep=KEEP, actor=operator)
    ts = paths.close_ts[0]
    for tranche, field, rate in (
        (deal.senior, "seniorInterest", 430 + 450),
        (deal.junior, "juniorInterest", 430 + 900),
    ):
        accrued, last, outstanding, paid_before = (
            Fraction(0),
            tranche.drawdown_at or deal.drawdown_at,
            tranche.original,
            0,
        )
        for p in range(periods):
            accrued += Fraction(
                outstanding * (rate - (200 if p > 2 else 0)) * (int(ts[p]) - last), 10_000 * YEAR
            )
            last = int(ts[p])
            expected = ceil(accrued) - paid_before
            assert (run[field][:, p] == expected).all(), (field, p)
            paid_before += expected
            if tranche is deal.senior:
                cum = max([0] + [bps for due, bps in tranche.schedule if due <= ts[p]])
                due = (
                    tranche.original
                    if ts[p] >= tranche.maturity
                    else ceil(tranche.original * cum / 10_000)
                )
                outstanding = tranche.original - due
            elif ts[p] >= tranche.maturity:
                outstanding = 0
        assert (run["senior_rate"][:, 3:] == 680).all() if field == "seniorInterest" else True
    assert not run["defaulted"].any() and not run["topup_new"].any()
    term, _ = horizon(deal, s)
    # DSCR holds every month but the maturity one (the whole balance falls due)
    assert not run["sweep_on"][:, : term - 1].any()


def _el(s, paths=4_000):
    spec = load_termsheet(TERMSHEET).to_deal_spec(EPOCH)
    r = run_note(deal_params(spec, s), s, paths, seed=11, workers=1).as_dict()
    return [t["el"] for t in r["tranches"]]


@pytest.mark.parametrize(
    "dotted, values",
    [
        ("rent.drift_per_year", [-0.10, -0.20, -0.30, -0.40]),
        ("generation.value_loss_a", [0.05, 0.15, 0.30, 0.50]),
        ("generation.launch_probability", [0.0, 0.05, 0.10, 0.20]),
        ("recovery.fire_sale_discount", [0.10, 0.30, 0.50, 0.70]),
    ],
)
def test_a_harsher_scenario_never_lowers_expected_loss(dotted, values):
    base = load_scenario("base")
    els = [_el(base.with_value(dotted, v)) for v in values]
    for a, b in zip(els, els[1:], strict=False):
        assert b[0] >= a[0] - 1e-12 and b[1] >= a[1] - 1e-12, (dotted, values, els)
    assert els[-1] != els[0], "the driver must matter"


def test_a_wrong_scenario_field_is_named():
    data = yaml.safe_load(BASE.read_text())
    data["rent"]["drift_per_yaer"] = data["rent"].pop("drift_per_year")
    with pytest.raises(ScenarioError) as e:
        scenario_from_data(data, "typo.yaml")
    assert "rent.drift_per_yaer" in str(e.value) and "unknown field" in str(e.value)
    assert "rent.drift_per_year" in str(e.value)  # and the missing one
    data = yaml.safe_load(BASE.read_text())
    data["utilization"]["transition"]["value"][0] = [0.5, 0.2, 0.2]
    with pytest.raises(ScenarioError, match=r"utilization\.transition.*sum"):
        scenario_from_data(data, "bad.yaml")
    data = yaml.safe_load(BASE.read_text())
    del data["fleet"]["gpus"]["source"]
    with pytest.raises(ScenarioError, match=r"fleet\.gpus\.source: required"):
        scenario_from_data(data, "nosource.yaml")


def test_cli_names_the_bad_field_of_a_term_sheet_and_of_a_scenario(tmp_path):
    runner = CliRunner()
    sheet = yaml.safe_load(Path(TERMSHEET).read_text())
    sheet["tranches"][0]["sprad"] = sheet["tranches"][0].pop("spread")
    bad_sheet = tmp_path / "sheet.yaml"
    bad_sheet.write_text(yaml.safe_dump(sheet))
    res = runner.invoke(app, ["risk", "run", str(bad_sheet), "--paths", "10"])
    assert res.exit_code != 0
    assert "tranches[0].sprad" in res.output + str(res.stderr_bytes or b"")
    scen = yaml.safe_load(BASE.read_text())
    scen["recovery"]["fire_sale_discount"]["value"] = "a lot"
    bad_scen = tmp_path / "scen.yaml"
    bad_scen.write_text(yaml.safe_dump(scen))
    res = runner.invoke(
        app, ["risk", "run", TERMSHEET, "--scenario", str(bad_scen), "--paths", "10"]
    )
    assert res.exit_code != 0
    assert "recovery.fire_sale_discount.value" in res.output + str(res.stderr_bytes or b"")


def test_cli_run_json_and_report(tmp_path):
    runner = CliRunner()
    stem = tmp_path / "r"
    res = runner.invoke(
        app,
        [
            "risk",
            "run",
            TERMSHEET,
            "--paths",
            "3000",
            "--workers",
            "1",
            "--json",
            "--report",
            str(stem),
        ],
    )
    assert res.exit_code == 0, res.output
    import json

    r = json.loads(res.stdout)
    assert len(r["tranches"]) == 2 and set(r["events_by_month"]) >= {"default", "step_in"}
    page = (tmp_path / "r.html").read_text()
    assert page.count("<svg") >= 6 and "http" not in page.replace("http://www.w3.org/2000/svg", "")
    md = (tmp_path / "r.md").read_text()
    assert "| senior |" in md
    assert "| rent.drift_per_year | -0.3 | seeds 000/001" in md  # every parameter, its source
    assert r["inputs"]["seed"] == 1 and r["inputs"]["scenario"]["name"] == "base"


def test_chunks_and_workers_do_not_change_the_figures():
    s = load_scenario("base")
    spec = load_termsheet(TERMSHEET).to_deal_spec(EPOCH)
    deal = deal_params(spec, s)
    one = run_note(deal, s, 3_000, seed=3, workers=1, chunk=1_000).as_dict()
    two = run_note(deal, s, 3_000, seed=3, workers=2, chunk=1_000).as_dict()
    assert one["tranches"] == two["tranches"]
