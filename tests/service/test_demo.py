"""`make demo` end to end: `python -m gpucredit.demo` (the Makefile's entry) as a
subprocess, with its real anvil, scripts/deploy.py, four oracle nodes and the CLI.

The timeline it writes (timeline.json, the same rows it prints) is checked
against the seeds' story, step by step; then that nothing it started is still
running. A second run is interrupted (SIGINT, as Ctrl-C sends) once the nodes
are up: it must stop everything and exit 130.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from gpucredit.demo import NODE_NAMES, STORY
from gpucredit.story import DOWN_PERIOD, LYING_PERIOD

REPO = Path(__file__).resolve().parents[2]
USD = 10**6


def demo_command(run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "gpucredit.demo", "--dir", str(run_dir)]


def demo_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GPUCREDIT_", "PYTEST_"))}
    env["PATH"] = f"{REPO / 'node_modules' / '.bin'}:{Path(sys.executable).parent}:{env['PATH']}"
    env["COLUMNS"] = "200"
    return env


def gpucredit(command: str) -> list[str]:
    argv = shlex.split(command)
    assert argv[0] == "gpucredit", command
    return [str(Path(sys.executable).parent / "gpucredit"), *argv[1:]]


def replay_printed(stdout: str, tmp_path: Path, live: bool) -> tuple[int, dict]:
    """Runs the replay command exactly as the demo printed it; its exit code and JSON."""
    commands = [
        line.strip()
        for line in stdout.splitlines()
        if line.strip().startswith("gpucredit audit replay")
    ]
    command = next(c for c in commands if ("--verify-chain" in c) == live)
    result_file = tmp_path / "replay.json"
    result = subprocess.run(
        [*gpucredit(command), "--json", str(result_file)],
        cwd=REPO,
        env=demo_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    return result.returncode, json.loads(result_file.read_text())


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def assert_nothing_left(run_dir: Path) -> None:
    pids = json.loads((run_dir / "pids.json").read_text())
    assert {"anvil", "deploy", *NODE_NAMES} <= set(pids)
    deadline = time.monotonic() + 10  # a killed child is reaped by its parent at once
    while any(alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [name for name, pid in pids.items() if alive(pid)], pids
    inside = []
    for proc in psutil.process_iter(["pid", "cwd", "cmdline"]):
        cwd = proc.info["cwd"]
        if cwd and Path(cwd).is_relative_to(run_dir) and proc.status() != psutil.STATUS_ZOMBIE:
            inside.append((proc.info["pid"], proc.info["cmdline"]))
    assert not inside, f"processes still running in {run_dir}: {inside}"


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("demo") / "run"
    started = time.monotonic()
    result = subprocess.run(
        demo_command(run_dir),
        cwd=REPO,
        env=demo_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    wall = time.monotonic() - started
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-4000:]
    timeline = json.loads((run_dir / "timeline.json").read_text())
    return run_dir, result.stdout, timeline, wall


def test_demo_exits_0_prints_the_timeline_and_the_logs(demo_run):
    run_dir, stdout, timeline, wall = demo_run
    for header in ("period", "util", "uptime", "revenue", "DSCR", "LTV", "senior", "events"):
        assert header in stdout
    assert "timeline: one row per 30-day period" in stdout
    assert "lenders at maturity" in stdout
    assert f"logs and data: {run_dir}/" in stdout
    for log in ("anvil.log", "deploy.log", "cli.log", "timeline.json"):
        assert (run_dir / log).stat().st_size > 0, log
        assert log in stdout
    for name in NODE_NAMES:
        node_log = (run_dir / name / "node.log").read_text()
        assert "signed fleet 1 period 11" in node_log
        assert (run_dir / name / "oracle.db").exists()
    assert "manifest written" in (run_dir / "deploy.log").read_text()
    assert len(list((run_dir / "telemetry").glob("period-*.json"))) == 12
    assert len(list((run_dir / "telemetry").glob("node-d-lie-period-*.json"))) == 1
    # the printed rows are the recorded ones
    for row in timeline["rows"]:
        assert "; ".join(row["events"])[:40] in stdout.replace("\n", " ") or not row["events"]
    timings = timeline["timings_seconds"]  # reported, not asserted: speed is for benchmarks
    assert {"deploy_done", "setup", "year", "archive", "total"} <= timings.keys(), timings
    assert all(seconds >= 0 for seconds in timings.values()), timings
    print(f"demo: {timings}, wall {wall:.0f} s")


def test_demo_timeline_follows_the_story(demo_run):
    _, _, timeline, _ = demo_run
    rows = timeline["rows"]
    assert [r["period"] for r in rows] == list(range(12))
    for row, (utilization, uptime, story) in zip(rows, STORY, strict=True):
        assert (row["utilization_bps"], row["uptime_bps"], row["story"]) == (
            utilization,
            uptime,
            story,
        )
        assert row["revenue_reported"] == utilization * 28_800_000  # $0.40 x 1,000 GPUs x 720 h
        # every period was reported by a 3-of-4 quorum of the nodes (f = 1) and closed by a node;
        # the stored utilization above is the honest one even when node-d lied
        assert row["observations"] >= 3
        assert row["report_by"] in NODE_NAMES and row["closed_by"] in NODE_NAMES

    lie = rows[LYING_PERIOD]["events"]
    assert any("node-d signed 95% utilization: outvoted" in e for e in lie), lie
    down = rows[DOWN_PERIOD]
    assert "node-c down" in down["events"] and down["observations"] == 3, down
    assert down["report_by"] != "node-c"

    steps = {
        r["period"]: (r["old_step_bps"], r["new_step_bps"])
        for r in rows
        if r["old_step_bps"] != r["new_step_bps"]
    }
    assert steps == {
        2: (0, -200),  # three periods at >= 90 %: the coupon steps down
        4: (-200, 300),  # the demand shock (< 60 %): step-down off, step-up on
        6: (300, 0),  # back above 60 % with the top-up cured: step-up off
        11: (0, -200),  # three strong periods again
    }
    assert [r["senior_rate_bps"] for r in rows] == [
        880, 880, 680, 680, 1180, 1180, 880, 880, 880, 880, 880, 680,
    ]  # fmt: skip
    assert [r["junior_rate_bps"] - r["senior_rate_bps"] for r in rows] == [450] * 12

    shock, during, recovery = rows[4], rows[5], rows[6]
    assert shock["top_up_due"] > 0
    assert {"LTV", "low utilization", "top-up open"} <= set(shock["breaches"])
    assert shock["ltv_limit_bps"] == 6_500  # the tighter limit while the step-up is on
    assert shock["sweep"] > 0 and shock["equity_blocked"]
    assert any("top-up" in e and "due" in e for e in shock["events"])
    assert during["events"][0] == "+250 GPUs pledged: top-up cured"
    assert during["equity_blocked"] and "low utilization" in during["breaches"]
    assert "top-up open" not in during["breaches"]
    assert recovery["utilization_bps"] >= 6_000 and recovery["new_step_bps"] == 0
    assert [r["period"] for r in rows if r["top_up_due"]] == [4]
    for row in rows[:4] + rows[7:11]:  # no breach: no sweep, equity not blocked
        assert row["breaches"] == [] and row["sweep"] == 0 and not row["equity_blocked"]
    assert any(r["equity"] > 0 for r in rows[:4])

    maturity = rows[11]
    assert maturity["events"][0] == "refinancing $17,500,000 paid in"
    assert maturity["principal"] + shock["sweep"] == 17_000_000 * USD


def test_demo_subscriptions_and_redemption(demo_run):
    _, _, timeline, _ = demo_run
    summary = timeline["summary"]
    cut = [s for s in summary["subscriptions"] if s["refunded"]]
    assert len(summary["subscriptions"]) == 3
    assert [(s["tranche"], s["asked"], s["notes"], s["refunded"]) for s in cut] == [
        ("GPUJ-27", 4_500_000 * USD, 3_000_000 * USD, 1_500_000 * USD)
    ]
    redeemed = sorted(x["principal_redeemed"] for x in summary["lenders"])
    for got, face in zip(redeemed, (3_000_000, 6_000_000, 8_000_000), strict=True):
        assert face * USD - 10 <= got <= face * USD  # shared per face: rounding dust stays
    assert all(x["coupons_claimed"] > 0 for x in summary["lenders"])
    assert summary["tranches"] == {"GPUS-27": "Repaid", "GPUJ-27": "Repaid"}
    assert summary["collateral_status"] == "Released"


def test_demo_archive_replays_clean_as_printed(demo_run, tmp_path):
    """The run ends with an auditable archive (audit manifest + events.jsonl), its report
    and the web app's index; the replay command it prints, run as printed, is clean."""
    run_dir, stdout, timeline, _ = demo_run
    assert "auditable archive:" in stdout and "replayed: clean" in stdout
    assert "gpucredit serve --db" in stdout and (run_dir / "index.sqlite").stat().st_size > 0
    manifest = json.loads((run_dir / "audit" / "manifest.json").read_text())
    assert manifest["chain_id"] == 31337 and manifest["contracts"]["notes"][0]["note_id"] == 1
    code, payload = replay_printed(stdout, tmp_path, live=False)
    assert code == 0 and payload["ok"], payload["mismatches"][:5]
    assert payload["closes"] == 12 and payload["fields_checked"] > 500
    assert timeline["summary"]["archive"]["ok"]
    # the report: the cure between closes, the release at maturity and the withdrawals
    for name in ("audit.md", "audit.html"):
        report = (run_dir / "audit" / name).read_text()
        for shown in ("TopUpCured", "Servicer.NoteReleased", "Withdrawn", "CapitalDisbursed"):
            assert shown in report, (name, shown)
        assert "DSCR minimum (below: sweep, equity blocked)" in report and "30 days" in report


def test_demo_every_unit_ends_somewhere(demo_run):
    _, _, timeline, _ = demo_run
    summary = timeline["summary"]
    assert summary["capital_disbursed"] == 17_000_000 * USD
    released = summary["ledger"]["released"]
    assert released["servicer"]["unowned"] == 0
    owed = released["servicer"]["withdrawable"]
    assert owed["fee recipient"] == 12 * 5_000 * USD and owed["operator"] > 0
    withdrawn = {w["party"]: w["amount"] for w in summary["withdrawals"]}
    assert withdrawn == {k: v for k, v in owed.items() if v}
    settled = summary["ledger"]["settled"]
    assert settled["servicer"]["balance"] == 0
    for symbol in ("GPUS-27", "GPUJ-27"):
        assert 0 <= released[symbol]["unowned"] <= 30
        assert settled[symbol]["balance"] == settled[symbol]["unowned"] <= 30


def test_demo_leaves_no_process_behind(demo_run):
    run_dir, _, _, _ = demo_run
    assert_nothing_left(run_dir)


def test_ctrl_c_stops_everything(tmp_path):
    run_dir = tmp_path / "run"
    log = (tmp_path / "demo.out").open("w")
    proc = subprocess.Popen(
        demo_command(run_dir), cwd=REPO, env=demo_env(), stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 300
        pid_file = run_dir / "pids.json"
        while not (pid_file.exists() and "node-c" in pid_file.read_text()):
            assert proc.poll() is None, (tmp_path / "demo.out").read_text()
            assert time.monotonic() < deadline, "the demo never started its nodes"
            time.sleep(0.2)
        time.sleep(1)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(120) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    output = (tmp_path / "demo.out").read_text()
    assert "interrupted" in output and "stopped: anvil" in output
    assert_nothing_left(run_dir)
