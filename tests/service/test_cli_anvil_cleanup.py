"""A service test that fails after starting its anvil leaves no anvil behind.

Issue 17: one anvil was still alive an hour after a failed run. Each case runs
a small pytest session in a subprocess (the repository's service harness,
`tests/service/harness.py`), lets it fail after an anvil started, and checks
that the anvil's process is gone once the session has ended: a test that
never stops its anvil, a module fixture whose set-up fails after starting
one (as `test_cli.Env` did when the deployment failed), and a pytest process
killed with SIGKILL (no teardown, no atexit at all).

Run with `python -m pytest -p no:pytest-brownie tests/service/test_cli_anvil_cleanup.py`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

NO_STOP = """
from harness import Anvil

def test_fails_without_stopping():
    chain = Anvil()
    open(PIDFILE, "w").write(str(chain.proc.pid))
    assert False, "a failing test"
"""

FAILED_SETUP = """
import pytest
from harness import Anvil

@pytest.fixture(scope="module")
def env():
    chain = Anvil()
    open(PIDFILE, "w").write(str(chain.proc.pid))
    raise AssertionError("deployment failed")  # before the yield: no teardown runs
    yield chain

def test_uses_env(env):
    pass
"""

KILLED = """
import time
from harness import Anvil

def test_hangs():
    chain = Anvil()
    open(PIDFILE, "w").write(str(chain.proc.pid))
    time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose: look at its state
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _write(tmp_path: Path, body: str) -> tuple[Path, Path]:
    pidfile = tmp_path / "anvil.pid"
    test = tmp_path / "test_leak.py"
    test.write_text(f"PIDFILE = {str(pidfile)!r}\n" + body)
    return test, pidfile


def _argv(test: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:pytest-brownie",
        "-p",
        "no:cacheprovider",
        "-q",
        "--rootdir",
        str(test.parent),
        "--confcutdir",
        str(test.parent),
        str(test),
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parents[1])])}


def _wait_dead(pid: int, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("body", [NO_STOP, FAILED_SETUP], ids=["test-never-stops", "setup-fails"])
def test_a_failed_test_leaves_no_anvil(tmp_path, body):
    test, pidfile = _write(tmp_path, body)
    result = subprocess.run(_argv(test), env=_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode != 0, result.stdout
    pid = int(pidfile.read_text())
    try:
        assert _wait_dead(pid), f"anvil {pid} still running after the failed session"
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_a_killed_session_leaves_no_anvil(tmp_path):
    test, pidfile = _write(tmp_path, KILLED)
    session = subprocess.Popen(
        _argv(test), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while not pidfile.exists() or not pidfile.read_text():
            assert time.monotonic() < deadline, "the anvil never started"
            assert session.poll() is None, "the session ended early"
            time.sleep(0.1)
        pid = int(pidfile.read_text())
        session.send_signal(signal.SIGKILL)
        session.wait(10)
        try:
            assert _wait_dead(pid), f"anvil {pid} outlived its SIGKILLed session"
        finally:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    finally:
        if session.poll() is None:
            session.kill()
            session.wait()
