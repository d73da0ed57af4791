"""Issue 17: every field of every event of an exported year, changed by one unit.

The archive is the demo's year (gpucredit/story.py: subscriptions cut pro
rata, steps, a demand shock with a top-up and its cure, refinancing at
maturity, redemptions, claims, withdrawals, the release), exported from a
local chain by `gpucredit audit export` (tests/fixtures/audit/README.md says
how to regenerate it). Each change is made alone, in memory, and the year is
replayed in-process:

- a number +1, a flag flipped, a hash's last digit changed, an address
  replaced by another party of the same archive (the next one in a fixed
  order: holders, the operator, the fee recipient, the trustee, the
  servicer, the signers...);
- the change must be flagged at its own line, unless docs/audit.md lists the
  field: under "checked where it feeds" a mismatch anywhere is required (an
  input flagged at the decision it feeds), under "not checked" nothing is (each
  with why). The test reads those two lists from the docs.

The whole sweep (about 2,300 changes) takes 60-90 s on the 2-core box, so
by default every 4th change runs (`GPUCREDIT_AUDIT_SWEEP=4`, deterministic);
`make fuzz` runs all of them (`GPUCREDIT_AUDIT_SWEEP=1`).
"""

import fnmatch
import json
import os
import re
import time
from pathlib import Path

import pytest

from gpucredit.audit.export import read_jsonl
from gpucredit.audit.replay import Replayer

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "audit" / "demo-year.jsonl"
DOCS = ROOT / "docs" / "audit.md"
ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
HEX = re.compile(r"0x[0-9a-f]+")
INTEGER = re.compile(r"-?[0-9]+")
STRIDE = int(os.environ.get("GPUCREDIT_AUDIT_SWEEP", "4") or "4")


def listed(tag):
    """Field patterns (`Event.path`, `*` allowed) in docs/audit.md's sweep table `tag`."""
    text = DOCS.read_text()
    start = text.index(f"<!-- sweep:{tag} -->")
    block = text[start : text.index("<!-- /sweep -->", start)]
    rows = [row.split("|")[1].strip() for row in block.splitlines() if row.startswith("| `")]
    return [pattern.strip("`") for row in rows for pattern in row.split(", ")]


def leaves(value, path=()):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from leaves(item, (*path, index))
    else:
        yield path, value


def name_of(event, path):
    return ".".join([event, *(str(p) for p in path if not isinstance(p, int))])


def changed(value, parties, salt):
    """`value` moved by one unit, or None for text (names, reasons)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if not isinstance(value, str):
        return None
    if ADDRESS.fullmatch(value):
        others = [p for p in parties if p.lower() != value.lower()]
        return others[salt % len(others)]
    if INTEGER.fullmatch(value):
        return str(int(value) + 1)
    if HEX.fullmatch(value):
        return value[:-1] + ("1" if value[-1] != "1" else "2")
    return None


def setter(record, path, value):
    target = record["args"]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value


@pytest.fixture(scope="module")
def archive():
    return read_jsonl(FIXTURE)


def test_the_year_replays_clean(archive):
    result = Replayer(archive.header).run([dict(ev) for ev in archive.events])
    assert result.mismatches == []
    assert result.closes == 12


def test_every_one_unit_change_is_flagged_at_its_line_or_listed_in_the_docs(archive):
    feeds, unchecked = listed("feeds"), listed("unchecked")
    texts = [json.dumps(ev) for ev in archive.events]
    parties = sorted(
        {
            value
            for ev in archive.events
            for _, value in leaves(ev["args"])
            if isinstance(value, str) and ADDRESS.fullmatch(value) and int(value, 16)
        },
        key=str.lower,
    )
    changes = [
        (i, path, ev["event"])
        for i, ev in enumerate(archive.events)
        for path, value in leaves(ev["args"])
        if changed(value, parties, 0) is not None
    ]
    assert len(changes) > 2_000
    started = time.perf_counter()
    problems, swept, names = [], 0, set()
    for k, (i, path, event) in enumerate(changes):
        name = name_of(event, path)
        names.add(name)
        if k % STRIDE:
            continue
        events = [json.loads(text) for text in texts]
        record = events[i]
        before = dict(leaves(record["args"]))[path]
        after = changed(before, parties, k)
        setter(record, path, after)
        mismatches = Replayer(archive.header).run(events).mismatches
        swept += 1
        here = any(m.line == record["line"] for m in mismatches)
        if here or any(fnmatch.fnmatchcase(name, p) for p in unchecked):
            continue
        if mismatches and any(fnmatch.fnmatchcase(name, p) for p in feeds):
            continue
        where = "nowhere" if not mismatches else f"only at line {mismatches[0].line}"
        problems.append(f"line {record['line']} {name}: {before!r} -> {after!r} flagged {where}")
    elapsed = time.perf_counter() - started
    print(f"{swept} of {len(changes)} changes replayed in {elapsed:.1f} s")
    assert problems == [], f"{len(problems)} of {swept} changes:\n" + "\n".join(problems)
    # every pattern the docs list names a field the sweep reaches (no stale entries)
    for pattern in feeds + unchecked:
        assert any(fnmatch.fnmatchcase(n, pattern) for n in names), pattern
