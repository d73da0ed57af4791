"""Security figures -> bench/security.json (`make fuzz`).

    python bench/security.py [--examples 1000] [--steps 50] [--jobs 2]

1. Slither: `tools/slither_gate.py` (fails on any medium/high finding or an
   untriaged low/informational one); records the counts.
2. The access-control matrix: `tests/unit/test_access_control_matrix.py`;
   records how many (privileged function, forbidden actor) pairs it tried.
3. The invariant campaign: every `tests/stateful/test_*.py` (the money-flow
   state machines) with GPUCREDIT_FUZZ_EXAMPLES sequences of
   GPUCREDIT_FUZZ_STEPS steps each, --jobs machines at a time.
   `tests/stateful/conftest.py` counts what really ran and keeps generating
   until that many sequences ran every step (Hypothesis starts with minimal
   examples and may stop a sequence early); `invariant_sequences` is the
   smallest number of full-length sequences any machine ran, and the
   per-machine counts and times are recorded too.

Any failure stops the script before bench/security.json is written, so the
file only ever holds figures of a passing run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "security.json"
BUILD = ROOT / "build" / "security"
BIN = Path(sys.executable).parent


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{ROOT / 'node_modules' / '.bin'}:{BIN}:{env.get('PATH', '')}"
    env["SOLCX_BINARY_PATH"] = str(ROOT / "tools" / "solc" / "bin")
    env["VIRTUAL_ENV"] = str(BIN.parent)
    env.update(extra)
    return env


def _run(command: list[str], what: str, **env: str) -> float:
    print(f"== {what}: {' '.join(command)}", flush=True)
    started = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, env=_env(**env), check=False)
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{what} failed (exit {done.returncode}); nothing written")
    print(f"== {what}: passed in {elapsed:.0f} s", flush=True)
    return elapsed


def _run_campaign(examples: int, steps: int, jobs: int) -> dict[str, dict]:
    """Runs every state machine, `jobs` at a time (each test process starts
    its own anvil on a free port); output goes to build/security/fuzz-*.log."""
    brownie = str(BIN / "brownie")
    env = _env(GPUCREDIT_FUZZ_EXAMPLES=str(examples), GPUCREDIT_FUZZ_STEPS=str(steps))
    waiting = sorted((ROOT / "tests" / "stateful").glob("test_*.py"))
    running: dict[Path, tuple[subprocess.Popen, float, Path]] = {}
    machines: dict[str, dict] = {}
    failed = []
    while waiting or running:
        while waiting and len(running) < jobs:
            path = waiting.pop(0)
            counts = BUILD / f"fuzz-{path.stem}.json"
            counts.unlink(missing_ok=True)
            log = (BUILD / f"fuzz-{path.stem}.log").open("w")
            command = [brownie, "test", str(path.relative_to(ROOT)), "-q"]
            print(f"== invariants {path.name} ({examples} x {steps}): {log.name}", flush=True)
            process = subprocess.Popen(
                command,
                cwd=ROOT,
                env={**env, "GPUCREDIT_FUZZ_REPORT": str(counts)},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            running[path] = (process, time.monotonic(), counts)
            time.sleep(5)  # each process picks a free port for its anvil: not at once
        for path, (process, started, counts) in list(running.items()):
            if process.poll() is None:
                continue
            del running[path]
            seconds = time.monotonic() - started
            if process.returncode != 0:
                print(f"== invariants {path.name}: FAILED (exit {process.returncode})", flush=True)
                failed.append(path.name)
                continue
            ran = {"sequences": 0, "full_length_sequences": 0, "steps": 0}
            for test in json.loads(counts.read_text()).values():
                for key in ran:
                    ran[key] += test[key]
            machines[path.name] = {**ran, "seconds": round(seconds, 1)}
            print(f"== invariants {path.name}: passed in {seconds:.0f} s: {ran}", flush=True)
        time.sleep(1)
    if failed:
        raise SystemExit(f"invariants failed in {', '.join(failed)}; see {BUILD}; nothing written")
    return machines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1_000, help="sequences per machine")
    parser.add_argument("--steps", type=int, default=50, help="steps per sequence")
    parser.add_argument("--jobs", type=int, default=2, help="machines run at once (one anvil each)")
    parser.add_argument("--out", type=Path, default=OUT, help="where to write the figures")
    args = parser.parse_args(argv)
    BUILD.mkdir(parents=True, exist_ok=True)

    slither_summary = BUILD / "slither.json"
    gate = [str(BIN / "python"), "tools/slither_gate.py", "--summary", str(slither_summary)]
    slither_seconds = _run(gate, "slither gate")
    slither = json.loads(slither_summary.read_text())

    brownie = str(BIN / "brownie")
    _run([brownie, "compile"], "compile")
    matrix_file = BUILD / "access_control.json"
    matrix_file.unlink(missing_ok=True)
    _run(
        [brownie, "test", "tests/unit/test_access_control_matrix.py", "-q"],
        "access-control matrix",
    )
    matrix = json.loads(matrix_file.read_text())

    machines = _run_campaign(args.examples, args.steps, args.jobs)

    figures = {
        "slither_high": slither["high"],
        "slither_medium": slither["medium"],
        "slither_low": slither["low"],
        "slither_informational": slither["informational"],
        "slither_suppressed_in_source": slither["suppressed_in_source"],
        "invariant_sequences": min(m["full_length_sequences"] for m in machines.values()),
        "invariant_steps_per_sequence": args.steps,
        "invariant_requested": {"sequences": args.examples, "steps": args.steps},
        "invariant_machines": machines,
        "invariant_jobs": args.jobs,
        "access_control_cases": matrix["access_control_cases"],
        "access_control_operations": matrix["operations"],
        "commands": {
            "slither": "python tools/slither_gate.py",
            "access_control": "brownie test tests/unit/test_access_control_matrix.py",
            "invariants": (
                f"GPUCREDIT_FUZZ_EXAMPLES={args.examples} GPUCREDIT_FUZZ_STEPS={args.steps} "
                "brownie test tests/stateful"
            ),
        },
        "slither_seconds": round(slither_seconds, 1),
    }
    args.out.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
