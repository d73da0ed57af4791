"""Counts what the state machines really ran, for `bench/security.py`.

With GPUCREDIT_FUZZ_REPORT=<path>, every Hypothesis state machine run in
this folder is counted: Hypothesis checks a machine's invariants once
before its first step and once after every step, so the calls per machine
instance are its steps + 1. Hypothesis starts with minimal (one- or
two-step) examples and may end a sequence early, so `max_examples` alone
overstates the campaign; the report says how many sequences ran and how
many reached the full `stateful_step_count`. Without the variable nothing
is patched.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import pytest
from hypothesis.stateful import RuleBasedStateMachine

_REPORT = os.environ.get("GPUCREDIT_FUZZ_REPORT")
_STEPS = int(os.environ.get("GPUCREDIT_FUZZ_STEPS", "0"))
_calls: dict[str, list[list[int]]] = defaultdict(list)  # test -> one counter per machine
_current = {"test": "?"}

if _REPORT:
    _original = RuleBasedStateMachine.check_invariants

    def _counting(self, *args, **kwargs):
        counter = self.__dict__.get("_gpucredit_checks")
        if counter is None:  # a new machine: a new sequence
            counter = self.__dict__["_gpucredit_checks"] = [0]
            _calls[_current["test"]].append(counter)
        counter[0] += 1
        return _original(self, *args, **kwargs)

    RuleBasedStateMachine.check_invariants = _counting


@pytest.fixture(autouse=True)
def _count_state_machine_steps(request):
    _current["test"] = request.node.nodeid
    yield
    if not _REPORT:
        return
    report = {}
    for test, machines in _calls.items():
        steps = [counter[0] - 1 for counter in machines]
        report[test] = {
            "sequences": len(steps),
            "steps": sum(steps),
            "full_length_sequences": sum(1 for s in steps if _STEPS and s >= _STEPS),
            "max_steps_per_sequence": max(steps, default=0),
        }
    path = Path(_REPORT)
    previous = json.loads(path.read_text()) if path.exists() else {}
    previous.update(report)
    path.write_text(json.dumps(previous, indent=2) + "\n")
