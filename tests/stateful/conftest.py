"""Runs the state machines in this folder and counts what really ran.

`run_machine(Machine, examples=N, steps=S)` runs N *full-length* sequences
of S steps (GPUCREDIT_FUZZ_EXAMPLES and GPUCREDIT_FUZZ_STEPS override both:
`make fuzz`). `max_examples` alone overstates a campaign: Hypothesis spends
its first examples on minimal data and ends some sequences early, so the
runner counts the sequences that ran every step and keeps generating fresh
ones (no example database, no replays) until there are N.

Counting: Hypothesis checks a machine's invariants once before its first
step and once after every step, so the checks per machine instance are its
steps + 1. With GPUCREDIT_FUZZ_REPORT=<path> the counts per test are written
there for `bench/security.py`.
"""

from __future__ import annotations

import gc
import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test

_REPORT = os.environ.get("GPUCREDIT_FUZZ_REPORT")
_sequences: list[list[int]] = []  # one invariant-check counter per machine instance

_original_check_invariants = RuleBasedStateMachine.check_invariants


def _counting_check_invariants(self, *args, **kwargs):
    counter = self.__dict__.get("_gpucredit_checks")
    if counter is None:  # a new machine: a new sequence
        counter = self.__dict__["_gpucredit_checks"] = [0]
        _sequences.append(counter)
    counter[0] += 1
    return _original_check_invariants(self, *args, **kwargs)


RuleBasedStateMachine.check_invariants = _counting_check_invariants


def _steps_run() -> list[int]:
    return [counter[0] - 1 for counter in _sequences]


def _full_length(steps: int) -> int:
    return sum(s >= steps for s in _steps_run())


def _max_examples(full_length: int) -> int:
    """`max_examples` such that about `full_length` examples run all their
    steps: Hypothesis first spends clamp(10, max_examples // 10, 50) + 1
    examples on minimal data, which stop a machine after a step or two."""
    total = full_length
    while total - (min(max(total // 10, 10), 50) + 1) < full_length:
        total += 1
    return total


@pytest.fixture
def run_machine(request):
    _sequences.clear()
    ran = {}

    def run(machine, *, examples: int, steps: int, **extra_settings) -> None:
        examples = int(os.environ.get("GPUCREDIT_FUZZ_EXAMPLES", examples))
        steps = int(os.environ.get("GPUCREDIT_FUZZ_STEPS", steps))
        ran["steps_per_sequence"] = steps
        # chain.revert() at the start of every sequence runs gc.collect(); with
        # the project and Hypothesis loaded that is ~0.15 s per sequence unless
        # the objects alive now are frozen out of the collector
        gc.freeze()
        try:
            while (done := _full_length(steps)) < examples:
                run_state_machine_as_test(
                    machine,
                    settings=settings(
                        max_examples=_max_examples(examples - done),
                        stateful_step_count=steps,
                        deadline=None,
                        suppress_health_check=[HealthCheck.too_slow],
                        phases=[Phase.generate],
                        database=None,
                        **extra_settings,
                    ),
                )
                if _full_length(steps) == done:
                    pytest.fail(f"no sequence of {machine.__name__} reached {steps} steps")
        finally:
            gc.unfreeze()

    yield run
    if _REPORT and ran:
        steps = _steps_run()
        report = {
            "sequences": len(steps),
            "steps": sum(steps),
            "full_length_sequences": _full_length(ran["steps_per_sequence"]),
            "max_steps_per_sequence": max(steps, default=0),
        }
        path = Path(_REPORT)
        previous = json.loads(path.read_text()) if path.exists() else {}
        previous[request.node.nodeid] = report
        path.write_text(json.dumps(previous, indent=2) + "\n")
