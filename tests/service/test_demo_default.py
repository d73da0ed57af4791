"""`make demo STORY=default KEEP=1`: the bad year, end to end, kept running.

`python -m gpucredit.demo --story default --keep` as a subprocess, with its real
anvil, deploy script, four oracle nodes and the CLI: a demand shock meets a
lapsed cure, default is declared, the trustee steps in, a report is missed, the
trustee sells the fleet and winds the note down (the junior tranche takes the
loss), the liens are released. Checked:

- the timeline against the story, step by step;
- that every stablecoin unit ends somewhere: once the note is released the
  servicer holds exactly what it owes its named payees and each tranche what
  its holders can claim (up to rounding dust), and after every claim and
  withdrawal only that dust is left;
- the archive: the replay command the demo prints, run as printed, is clean;
  with the chain kept running (`--keep`), the printed `--verify-chain` command
  also matches the archive line by line against the chain's logs;
- Ctrl-C ends the kept run with exit 0 and nothing left running.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time

import pytest

from gpucredit.demo import NODE_NAMES
from gpucredit.demo.ledger import DUST_PER_HOLDER
from gpucredit.story import (
    DEFAULT_MISSED_PERIOD,
    DEFAULT_SHOCK_PERIOD,
    DEFAULT_STORY,
    FIRE_SALE,
    JUNIOR_FACE,
    SENIOR_FACE,
)
from tests.service.test_demo import REPO, alive, assert_nothing_left, demo_env, replay_printed

USD = 10**6
KEPT = "Ctrl-C stops them all"


@pytest.fixture(scope="module")
def kept_run(tmp_path_factory):
    """Runs the default story with --keep; yields (run dir, output so far, timeline,
    process) while the chain and nodes still run; then Ctrl-C and the end's output."""
    run_dir = tmp_path_factory.mktemp("demo-default") / "run"
    out_path = run_dir.parent / "demo.out"
    out = out_path.open("w")
    argv = [sys.executable, "-m", "gpucredit.demo", "--story", "default", "--keep"]
    proc = subprocess.Popen(
        [*argv, "--dir", str(run_dir)],
        cwd=REPO,
        env=demo_env(),
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    state: dict = {"proc": proc}
    try:
        deadline = time.monotonic() + 600
        while KEPT not in out_path.read_text():
            assert proc.poll() is None, out_path.read_text()[-8000:]
            assert time.monotonic() < deadline, out_path.read_text()[-8000:]
            time.sleep(0.5)
        timeline = json.loads((run_dir / "timeline.json").read_text())
        yield run_dir, out_path.read_text(), timeline, state
    finally:
        if proc.poll() is None:  # a test failed before Ctrl-C was tested
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        out.close()


def test_default_story_timeline(kept_run):
    _, stdout, timeline, _ = kept_run
    assert timeline["story"] == "default"
    rows = timeline["rows"]
    assert [r["period"] for r in rows] == list(range(len(DEFAULT_STORY)))
    assert "lenders after the wind-down" in stdout and "MISSED" in stdout

    shock = rows[DEFAULT_SHOCK_PERIOD]
    assert shock["top_up_due"] > 0 and not shock["top_up_cured"]
    assert (shock["old_step_bps"], shock["new_step_bps"]) == (0, 300)
    assert shock["ltv_limit_bps"] == 6_500 and shock["ltv_bps"] > 6_500

    collapse = rows[DEFAULT_SHOCK_PERIOD + 1]
    assert collapse["utilization_bps"] == 3_000 and collapse["dscr_bps"] < 10_000
    assert "top-up open" in collapse["breaches"] and collapse["equity_blocked"]

    missed = rows[DEFAULT_MISSED_PERIOD]
    assert missed["report_status"] == "missed" and missed["observations"] == 0
    assert missed["report_by"].startswith("node-")  # a node marked it missed and closed it
    assert {"stale report", "default"} <= set(missed["breaches"]), missed["breaches"]
    assert missed["events"][:2] == [
        "cure lapsed: default declared",
        "trustee stepped in: liens moved",
    ]
    assert "no report: marked missed" in missed["events"]
    assert all(r["report_status"] == "reported" for r in rows[:DEFAULT_MISSED_PERIOD])


def test_default_wind_down_loss_and_release(kept_run):
    run_dir, _, timeline, _ = kept_run
    # the enforcement steps are the CLI's commands, as a lender and the trustee would run them
    commands = (run_dir / "cli.log").read_text()
    for command in (
        "gpucredit servicer declare-default 1",
        "gpucredit trustee step-in 1",
        "gpucredit trustee finish-wind-down 1",
    ):
        assert f"$ {command} --json" in commands, command
    summary = timeline["summary"]
    assert summary["servicer_status"] == "Released"
    assert summary["collateral_status"] == "Released"
    # the sale pays the senior tranche in full; the junior is written off with the loss
    assert summary["tranches"] == {"GPUS-27": "Repaid", "GPUJ-27": "WrittenOff"}
    wound = summary["wind_down"]
    assert wound["seniorPrincipal"] > 0 and wound["residual"] == 0
    assert wound["cashIn"] >= FIRE_SALE
    [written] = summary["written_off"]
    assert written["tranche"] == "GPUJ-27"
    lenders = {x["tranche"]: x for x in summary["lenders"] if x["tranche"] == "GPUJ-27"}
    junior = lenders["GPUJ-27"]
    assert junior["principal_redeemed"] + written["principal_lost"] <= JUNIOR_FACE
    assert written["principal_lost"] > JUNIOR_FACE // 2  # most of the junior is lost
    senior_paid = sum(
        x["principal_redeemed"] for x in summary["lenders"] if x["tranche"] == "GPUS-27"
    )
    assert SENIOR_FACE - 10 <= senior_paid <= SENIOR_FACE
    assert summary["capital_disbursed"] == SENIOR_FACE + JUNIOR_FACE


def test_every_stablecoin_unit_ends_somewhere(kept_run):
    _, _, timeline, _ = kept_run
    ledger = timeline["summary"]["ledger"]
    released, settled = ledger["released"], ledger["settled"]
    # once released: the servicer holds exactly what it owes the named parties ...
    servicer = released["servicer"]
    assert servicer["unowned"] == 0
    assert servicer["balance"] == sum(servicer["withdrawable"].values())
    assert servicer["withdrawable"]["fee recipient"] > 0
    # ... and each tranche what its holders can claim, up to rounding dust
    for symbol in ("GPUS-27", "GPUJ-27"):
        entry = released[symbol]
        assert 0 <= entry["unowned"] <= DUST_PER_HOLDER * len(entry["claimable"]), entry
        assert sum(entry["claimable"].values()) > 0
    # after every claim and withdrawal, only that dust is left
    assert settled["servicer"]["balance"] == 0
    for symbol in ("GPUS-27", "GPUJ-27"):
        assert settled[symbol]["balance"] == settled[symbol]["unowned"]
        assert settled[symbol]["balance"] <= DUST_PER_HOLDER * len(settled[symbol]["claimable"])
    withdrawn = {w["party"]: w["amount"] for w in timeline["summary"]["withdrawals"]}
    assert withdrawn == {"fee recipient": servicer["withdrawable"]["fee recipient"]}


def test_the_printed_replay_of_the_bad_year_is_clean(kept_run, tmp_path):
    """The archive is in the run folder; the replay command the demo prints for the kept
    chain, run as printed, replays the archive (clean) and finds it equal, line by line,
    to the chain's logs."""
    run_dir, stdout, timeline, _ = kept_run
    assert (run_dir / "audit" / "events.jsonl").stat().st_size > 0
    assert json.loads((run_dir / "audit" / "manifest.json").read_text())["chain_id"] == 31337
    assert re.search(r"still running.*anvil on http://127\.0\.0\.1:\d+", stdout)
    for name in ("audit.html", "audit.md"):
        report = (run_dir / "audit" / name).read_text()
        for shown in ("DefaultDeclared", "SteppedIn", "WoundUp", "WrittenOff", "Withdrawn"):
            assert shown in report, (name, shown)
        assert "missed" in report
    code, payload = replay_printed(stdout, tmp_path, live=True)
    assert payload["closes"] == len(DEFAULT_STORY)
    assert payload["archive_differences"] == []
    assert code == 0, payload["mismatches"][:5]
    assert timeline["summary"]["archive"]["ok"]


def test_ctrl_c_ends_the_kept_run(kept_run):
    """Last in this module: the kept chain and nodes run until Ctrl-C, which stops them
    all; a kept run that the user ends is a success (exit 0)."""
    run_dir, _, timeline, state = kept_run
    proc = state["proc"]
    pids = json.loads((run_dir / "pids.json").read_text())
    assert proc.poll() is None
    assert alive(pids["anvil"]) and all(alive(pids[name]) for name in NODE_NAMES)
    proc.send_signal(signal.SIGINT)
    code = proc.wait(120)
    assert code == 0, (code, timeline["summary"]["archive"]["mismatches"][:5])
    output = (run_dir.parent / "demo.out").read_text()
    assert "Ctrl-C: stopping the chain and the nodes" in output and "stopped: anvil" in output
    assert_nothing_left(run_dir)
