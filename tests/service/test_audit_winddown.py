"""The trustee's wind-down, replayed as the contract does it.

The archive is the bad year's (`make demo STORY=default`, kept in
tests/fixtures/audit/default-year.jsonl): default, step-in, a fire sale posted
as cash, `finishWindDown()` (SteppedIn -> Released, `WoundUp` alone: fee
arrears, then senior interest and principal, then junior, the rest the
operator's), the junior tranche written off, the liens released. It replays
clean; one field of `WoundUp`, of a tranche's `Paid` in that call or of
`WrittenOff` changed the way an attacker rewriting the archive would, and the
replay flags it at that line.
"""

import json
from pathlib import Path

import pytest

from gpucredit.audit.export import read_jsonl
from gpucredit.audit.replay import Replayer

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "audit" / "default-year.jsonl"
PARTS = ("fees", "seniorInterest", "seniorPrincipal", "juniorInterest", "juniorPrincipal")


@pytest.fixture(scope="module")
def archive():
    return read_jsonl(FIXTURE)


@pytest.fixture
def events(archive):
    return [json.loads(json.dumps(ev)) for ev in archive.events]


def wound_up(events):
    [ev] = [ev for ev in events if ev["event"] == "WoundUp"]
    return ev


def written_off(events):
    [ev] = [ev for ev in events if ev["event"] == "WrittenOff"]
    return ev


def mismatches(archive, events):
    return Replayer(archive.header).run(events).mismatches


def at_line(archive, events, record):
    return [
        (m.field, m.expected, m.recorded)
        for m in mismatches(archive, events)
        if m.line == record["line"]
    ]


def test_the_bad_year_is_a_wind_down_and_replays_clean(archive, events):
    w = wound_up(events)
    same_tx = [ev["event"] for ev in events if ev["tx"] == w["tx"]]
    assert "NoteReleased" not in same_tx  # finishWindDown, not releaseCollateral
    assert "WrittenOff" in same_tx and "Paid" in same_tx
    a = {k: int(v) for k, v in w["args"].items()}
    assert a["cashIn"] == sum(a[k] for k in PARTS) + a["residual"]
    assert a["seniorPrincipal"] > 0 and int(written_off(events)["args"]["principalLost"]) > 0
    result = Replayer(archive.header).run(events)
    assert result.ok, [m.describe() for m in result.mismatches[:5]]


@pytest.mark.parametrize(
    "field, moved",
    [
        ("seniorPrincipal", ("juniorPrincipal",)),  # senior first: a unit moved to the junior
        ("juniorPrincipal", ("residual",)),  # the junior is owed it before the operator
        ("fees", ("seniorPrincipal",)),  # fee arrears come first
        ("residual", ("seniorPrincipal",)),  # nothing for the operator until both are repaid
    ],
)
def test_a_wound_up_part_moved_is_flagged_at_its_line(archive, events, field, moved):
    """The parts still add up to `cashIn`: only the model's order catches the move."""
    w = wound_up(events)
    args = w["args"]
    (other,) = moved
    amount = 1 if int(args[other]) >= 1 else 0
    if amount == 0:  # move the other way
        field, other = other, field
        amount = 1
    assert int(args[other]) >= amount
    args[field] = str(int(args[field]) + amount)
    args[other] = str(int(args[other]) - amount)
    flagged = at_line(archive, events, w)
    assert {name for name, _, _ in flagged} >= {field, other}, flagged


def test_the_cash_in_of_a_wind_down_is_checked(archive, events):
    w = wound_up(events)
    w["args"]["cashIn"] = str(int(w["args"]["cashIn"]) - 1)
    assert any(name == "cashIn" for name, _, _ in at_line(archive, events, w))


@pytest.mark.parametrize("field", ["principalLost", "interestLost"])
def test_a_written_off_loss_changed_is_flagged_at_its_line(archive, events, field):
    ev = written_off(events)
    ev["args"][field] = str(int(ev["args"][field]) + 1)
    flagged = at_line(archive, events, ev)
    assert [name for name, _, _ in flagged] == [field], flagged


def test_the_wind_down_payment_to_a_tranche_must_match_wound_up(archive, events):
    """A tranche's `Paid` in the wind-down carries exactly what `WoundUp` gave it."""
    w = wound_up(events)
    paid = next(
        ev
        for ev in events
        if ev["tx"] == w["tx"] and ev["event"] == "Paid" and int(ev["args"]["principal"])
    )
    paid["args"]["principal"] = str(int(paid["args"]["principal"]) - 1)
    assert any(name == "principal" for name, _, _ in at_line(archive, events, paid))


def test_a_missing_write_off_is_flagged(archive, events):
    ev = written_off(events)
    events.remove(ev)
    found = [m for m in mismatches(archive, events) if m.event == "WrittenOff"]
    assert found and found[0].recorded == "missing", found


def test_a_write_off_outside_a_wrap_up_is_flagged(archive, events):
    """Only the servicer's release or wind-down writes a tranche off."""
    ev = written_off(events)
    w = wound_up(events)
    events.remove(w)
    assert any(name.startswith("in a wrap-up") for name, _, _ in at_line(archive, events, ev))


def test_a_wind_down_before_step_in_is_flagged(archive, events):
    """`finishWindDown()` needs a stepped-in note: without `SteppedIn` the note is
    only Defaulted, and its `WoundUp` is flagged."""
    stepped = next(ev for ev in events if ev["event"] == "SteppedIn")
    events.remove(stepped)
    w = wound_up(events)
    assert any(name.startswith("stepped in") for name, _, _ in at_line(archive, events, w))


@pytest.mark.parametrize("to_trustee, flagged", [(True, False), (False, True)])
def test_cash_after_the_wind_down_goes_to_the_trustee(archive, events, to_trustee, flagged):
    """Cash paid in after `finishWindDown()` settles fee arrears (none are left
    here), then the rest goes to the trustee that stepped in, never the operator."""
    w, last = wound_up(events), events[-1]
    late = {
        "block": last["block"] + 1,
        "timestamp": last["timestamp"] + 12,
        "tx": "0x" + "ab" * 32,
        "log_index": 0,
        "contract": "Servicer",
        "address": w["address"],
        "event": "LateCashSettled",
        "args": {"amount": "5000000", "fees": "0", "rest": "5000000", "toTrustee": to_trustee},
        "line": last["line"] + 1,
    }
    events.append(late)
    header = dict(archive.header, to_block=late["block"])
    result = Replayer(header).run(events)
    found = [(m.field, m.expected, m.recorded) for m in result.mismatches if m.line == late["line"]]
    assert bool(found) is flagged and (not found or found[0][0] == "toTrustee"), found


def test_a_release_without_its_wound_up_is_flagged():
    """`releaseCollateral()` emits the servicer's `NoteReleased` and `WoundUp`
    together (the good year's archive): one without the other is reported."""
    good = read_jsonl(FIXTURE.parent / "demo-year.jsonl")
    events = [json.loads(json.dumps(ev)) for ev in good.events]
    assert Replayer(good.header).run(events).ok
    released = next(
        ev for ev in events if ev["event"] == "NoteReleased" and ev["contract"] == "Servicer"
    )
    events.remove(wound_up(events))
    found = at_line(good, events, released)
    assert ("(event)", "WoundUp in the same transaction", "missing") in found, found


def test_a_write_off_of_a_tranche_paid_in_full_is_flagged(archive, events):
    """The senior tranche is repaid in full by the wind-down: writing it off too
    (a `WrittenOff` forged for it) is not what `_payAndWriteOff` does."""
    w = wound_up(events)
    junior_off = written_off(events)
    senior_paid = next(
        ev
        for ev in events
        if ev["tx"] == w["tx"] and ev["event"] == "Paid" and ev["address"] != junior_off["address"]
    )
    forged = dict(
        junior_off,
        address=senior_paid["address"],
        args={"principalLost": "0", "interestLost": "0", "heldReleased": "0"},
        line=99_999,
    )
    events.insert(events.index(senior_paid) + 1, forged)
    found = at_line(archive, events, forged)
    assert any(name == "still owed after its part" for name, _, _ in found), found
