"""Issue 17: the replay checks who as strictly as how much.

Each test takes the demo's exported year (tests/fixtures/audit/demo-year.jsonl),
changes one party the way an attacker rewriting the archive would, and
expects the mismatch at the changed line. The findings: the recipient of the
operator's equity withdrawal (10.85M in the review), the servicer's operator
and fee recipient, the fleet's consumer, the oracle's signer list, and a
report claiming more observations than the fleet has signers.
"""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gpucredit.audit.cli import app as audit_app
from gpucredit.audit.export import read_jsonl
from gpucredit.audit.replay import Replayer

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "audit" / "demo-year.jsonl"


@pytest.fixture(scope="module")
def archive():
    return read_jsonl(FIXTURE)


@pytest.fixture
def events(archive):
    return [json.loads(json.dumps(ev)) for ev in archive.events]


def first(events, name, **args):
    return next(
        ev
        for ev in events
        if ev["event"] == name and all(ev["args"].get(k) == v for k, v in args.items())
    )


def parties(events):
    init = first(events, "ServicerInitialised")["args"]
    created = first(events, "NoteCreated")["args"]
    return init["operator"], init["feeRecipient"], created["trustee"]


def at_line(archive, events, record):
    mismatches = Replayer(archive.header).run(events).mismatches
    return [(m.field, m.expected, m.recorded) for m in mismatches if m.line == record["line"]]


def a_lender(events):
    return first(events, "RequestFulfilled")["args"]["controller"]


def test_the_equity_withdrawal_goes_to_the_operator(archive, events):
    operator, fees, _ = parties(events)
    withdrawal = max(
        (ev for ev in events if ev["event"] == "Withdrawn" and ev["args"]["to"] == operator),
        key=lambda ev: int(ev["args"]["amount"]),
    )
    withdrawal["args"]["to"] = a_lender(events)
    flagged = at_line(archive, events, withdrawal)
    assert flagged, "an equity withdrawal paid to a lender passed"
    assert any(field.startswith("something owed to") for field, _, _ in flagged)


def test_fees_go_to_the_fee_recipient(archive, events):
    operator, fees, _ = parties(events)
    withdrawal = first(events, "Withdrawn", to=fees)
    withdrawal["args"]["to"] = operator
    assert at_line(archive, events, withdrawal)


def test_the_servicer_operator_and_fee_recipient_are_the_factory_s(archive, events):
    init = first(events, "ServicerInitialised")
    _, _, trustee = parties(events)
    for role in ("operator", "feeRecipient"):
        changed = json.loads(json.dumps(events))
        record = next(ev for ev in changed if ev["line"] == init["line"])
        record["args"][role] = trustee
        flagged = at_line(archive, changed, record)
        assert [f for f, _, _ in flagged] == [role], (role, flagged)


def test_the_fleet_consumer_is_the_note_s_servicer(archive, events):
    registered = first(events, "FleetRegistered")
    registered["args"]["consumer"] = a_lender(events)
    assert [f for f, _, _ in at_line(archive, events, registered)] == ["consumer", "consumer"]


def test_the_signer_list_is_the_oracle_s(archive, events):
    changed = first(events, "SignersChanged")
    changed["args"]["signers"][1] = a_lender(events)
    assert [f for f, _, _ in at_line(archive, events, changed)] == ["signers"]


def test_observations_are_at_most_one_per_signer(archive, events):
    report = first(events, "ReportSubmitted")
    signers = len(first(events, "SignersChanged")["args"]["signers"])
    report["args"]["observations"] = signers + 1
    flagged = at_line(archive, events, report)
    assert [f for f, _, _ in flagged] == ["observations <= signers (one each)"]


def test_replay_writes_its_result_to_stdout(tmp_path):
    result = CliRunner().invoke(audit_app, ["replay", "--events", str(FIXTURE)])
    assert result.exit_code == 0, result.output
    assert "PASS" in result.stdout and "period closes" in result.stdout
    assert "PASS" not in result.stderr
