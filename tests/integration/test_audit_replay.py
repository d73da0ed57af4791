"""Issue 6: the auditor's replay against the contracts on a local chain.

- The demo's year (the story of `gpucredit/story.py`, played on the contracts
  with its `play_year`) is exported over RPC, written to JSON Lines by the CLI
  and replayed: zero mismatches, twelve closes, and the story's decisions
  (step-down, step-up with a top-up, sweep, cure, maturity) are where the demo
  put them. The CLI also compares the file with the chain and writes the report.
- Tampering with that file (one field altered, one event removed, events
  reordered) is reported as the exact mismatch, with exit code 1.
- Property: random histories (revenue payments, reports on time, late or
  missing, time steps, transfers, claims, redemptions, cash collateral,
  pledges, double-pledge proofs, haircuts, reference-rate changes, cures,
  defaults, step-in, withdrawals, release) replay with zero mismatches, and
  the model's state at the end equals the contracts' views.

Default: 10 random histories of up to 7 periods (well under a minute). More:
GPUCREDIT_AUDIT_EXAMPLES=200 brownie test tests/integration/test_audit_replay.py
"""

import json
import os
import shutil
from dataclasses import replace

import brownie
import pytest
from brownie import chain, web3
from brownie.exceptions import VirtualMachineError
from brownie.test import given
from eth_utils import keccak
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from typer.testing import CliRunner
from web3 import Web3

from gpucredit.audit.cli import app as audit_app
from gpucredit.audit.export import Manifest, export_events, read_jsonl, seal, write_jsonl
from gpucredit.audit.replay import Replayer, replay, replay_events
from gpucredit.merkle import MerkleTree, text_id
from gpucredit.protocol import (
    DAY,
    H100,
    USD,
    DealSpec,
    TrancheSpec,
    close_subscription,
    make_fleet,
    open_deal,
    pledge_fleet,
    register_batch,
    signer_order,
    submit_report,
)
from gpucredit.story import play_year

EXAMPLES = int(os.environ.get("GPUCREDIT_AUDIT_EXAMPLES", "10"))


@pytest.fixture(autouse=True)
def isolation(fn_isolation):
    """Every test starts from the module's deployments."""


def rpc_url():
    return web3.provider.endpoint_uri


def fresh_web3():
    return Web3(Web3.HTTPProvider(rpc_url()))


def manifest_of(registry, identities, oracle, notes, start_block, factory=None):
    contracts = {"NoteFactory": factory.address} if factory is not None else {}
    return {
        "chain_id": chain.id,
        "start_block": start_block,
        "contracts": {
            **contracts,
            "CollateralRegistry": registry.address,
            "IdentityRegistry": identities.address,
            "TelemetryOracle": oracle.address,
            "notes": [
                {"note_id": note_id, "servicer": s.address, "tranches": [t.address for t in ts]}
                for note_id, s, ts in notes
            ],
        },
    }


# ---------------------------------------------------------------------------
# The demo's year
# ---------------------------------------------------------------------------


DEMO_SIGNER_KEYS = [f"0x{(0xD3110 + i):064x}" for i in range(4)]


@pytest.fixture(scope="module")
def demo(accounts):
    """The demo's year (gpucredit/story.py) on its own contracts: subscriptions
    (junior cut pro rata), the fleet pledged, twelve reports and closes, 250
    more GPUs pledged to cure the top-up, refinancing at maturity, redemptions,
    coupon claims and the release of the collateral. Returns its manifest."""
    year = play_year(DEMO_SIGNER_KEYS)
    assert all(tranche.isRepaid() for tranche in year.deal.tranches)
    core, deal = year.core, year.deal
    # after the release: the fee recipient and the operator take what they are owed
    operator, fees = accounts[2], accounts[5]
    for account in (fees, operator):
        assert deal.servicer.withdrawable(account) > 0
        deal.servicer.withdraw({"from": account})
    manifest = year.audit_manifest(chain.id)
    assert manifest == manifest_of(
        core.registry,
        core.identities,
        core.oracle,
        [(deal.note_id, deal.servicer, deal.tranches)],
        year.start_block,
        core.factory,
    )
    return manifest


@pytest.fixture(scope="module")
def demo_file(demo, tmp_path_factory):
    """The demo's events, exported by `gpucredit audit export`."""
    folder = tmp_path_factory.mktemp("demo")
    manifest = folder / "manifest.json"
    manifest.write_text(json.dumps(demo))
    out = folder / "events.jsonl"
    result = CliRunner().invoke(
        audit_app,
        ["export", "--manifest", str(manifest), "--rpc", rpc_url(), "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    fixture = os.environ.get("GPUCREDIT_AUDIT_FIXTURE_OUT")
    if fixture:  # regenerates tests/fixtures/audit/demo-year.jsonl (see its README)
        shutil.copy(out, fixture)
    return out


def test_demo_year_replays_with_zero_mismatches(demo):
    exported = export_events(fresh_web3(), Manifest.from_dict(demo), page_size=7)
    result = replay_events(exported.header, exported.events)

    assert result.mismatches == []
    assert result.closes == 12
    periods = {row.period: row for row in result.periods}
    assert sorted(periods) == list(range(12))
    # the story: -200 bps after three periods >= 90 %, +300 bps and a top-up at the
    # demand shock (LTV above the tightened 65 % limit), sweep and equity block,
    # the step removed once utilization is back, principal at maturity
    assert periods[2].result["newStepBps"] == -200
    shock = periods[4]
    assert (shock.result["oldStepBps"], shock.result["newStepBps"]) == (-200, 300)
    assert shock.result["ltvLimitBps"] == 6_500 and shock.top_up is not None
    assert shock.waterfall["sweep"] > 0 and shock.result["equityBlocked"]
    assert periods[6].result["newStepBps"] == 0
    assert periods[11].waterfall["seniorPrincipal"] > 0
    # every decision field was compared, not skipped
    assert result.fields_checked > 800


def test_demo_file_cli_report_and_chain_comparison(demo, demo_file, tmp_path):
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(demo))
    report_dir = tmp_path / "report"
    summary = tmp_path / "summary.json"
    result = CliRunner().invoke(
        audit_app,
        [
            "replay",
            "--events",
            str(demo_file),
            "--verify-chain",
            "--manifest",
            str(manifest),
            "--rpc",
            rpc_url(),
            "--report-dir",
            str(report_dir),
            "--json",
            str(summary),
        ],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(summary.read_text())
    assert payload["ok"] and payload["closes"] == 12 and payload["archive_differences"] == []
    page = (report_dir / "audit.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and "<script" not in page
    assert len(list((report_dir / "charts").glob("*.png"))) == 3
    markdown = (report_dir / "audit.md").read_text()
    assert "| 4 |" in markdown and "low-util" in markdown and "PASS" in markdown

    # straight from the chain, no file
    result = CliRunner().invoke(
        audit_app, ["replay", "--manifest", str(manifest), "--rpc", rpc_url()]
    )
    assert result.exit_code == 0, result.output


def test_verify_chain_reads_the_archive_manifest_and_checks_its_head(demo_file, tmp_path):
    """`--verify-chain` needs no --manifest (the archive's header holds it),
    writes its result to stdout, and a replaced `head_hash` (or terms, parties)
    is a difference from the chain; a cut archive is refused at its first
    missing line."""
    runner = CliRunner()
    verify = ["replay", "--verify-chain", "--rpc", rpc_url(), "--show", "5"]
    clean = runner.invoke(audit_app, [*verify, "--events", str(demo_file)])
    assert clean.exit_code == 0, clean.output
    assert "PASS" in clean.stdout and "period closes" in clean.stdout

    lines = lines_of(demo_file)
    header = json.loads(lines[0])
    head = header["head_hash"]
    header["head_hash"] = "0x" + "ab" * 32
    tampered = tmp_path / "head.jsonl"
    tampered.write_text("\n".join(seal([json.dumps(header), *lines[1:]])) + "\n")
    out = tmp_path / "head.json"
    cli = runner.invoke(audit_app, [*verify, "--events", str(tampered), "--json", str(out)])
    assert cli.exit_code == 1, cli.output
    differences = json.loads(out.read_text())["archive_differences"]
    assert [(d["field"], d["expected"], d["recorded"], d["line"]) for d in differences] == [
        ("head_hash", head, header["head_hash"], 1)
    ]

    cut = tmp_path / "cut.jsonl"
    cut.write_text("\n".join(lines[:-2]) + "\n")
    refused = runner.invoke(audit_app, ["replay", "--events", str(cut)])
    assert refused.exit_code == 2
    assert f"line {len(lines) - 1}: the header announces {len(lines) - 1} events" in (
        refused.stderr
    )
    assert refused.stdout == ""


# ---------------------------------------------------------------------------
# Tampering
# ---------------------------------------------------------------------------


def lines_of(path):
    return path.read_text().splitlines()


def find(lines, event, **args):
    """Index of the first line of `event` whose args include `args`."""
    for i, line in enumerate(lines[1:], start=1):
        record = json.loads(line)
        if record["event"] == event and all(record["args"].get(k) == v for k, v in args.items()):
            return i, record
    raise AssertionError(f"no {event} {args}")


def replay_lines(tmp_path, lines):
    """Replays tampered lines re-chained (as anyone rewriting a file can): the
    model behind the hash chain. The chain's own refusals: test_audit_model."""
    path = tmp_path / "tampered.jsonl"
    path.write_text("\n".join(seal(lines)) + "\n")
    cli = CliRunner().invoke(audit_app, ["replay", "--events", str(path)])
    return replay(read_jsonl(path)), cli.exit_code


def test_one_altered_field_is_the_one_mismatch(demo_file, tmp_path):
    lines = lines_of(demo_file)
    i, record = find(lines, "WaterfallDistributed", period=4)
    sweep = int(record["args"]["result"]["sweep"])
    record["args"]["result"]["sweep"] = str(sweep + 1)
    lines[i] = json.dumps(record)

    result, code = replay_lines(tmp_path, lines)

    assert code == 1
    assert [(m.event, m.field, m.expected, m.recorded) for m in result.mismatches] == [
        ("WaterfallDistributed", "result.sweep", sweep, str(sweep + 1))
    ]
    m = result.mismatches[0]
    assert (m.block, m.tx, m.log_index, m.line) == (
        record["block"],
        record["tx"],
        record["log_index"],
        i + 1,
    )


def test_an_altered_input_is_caught_at_the_decision_it_feeds(demo_file, tmp_path):
    lines = lines_of(demo_file)
    i, record = find(lines, "ReportSubmitted", period=4)
    record["args"]["utilizationBps"] = 6_500  # hide the demand shock
    lines[i] = json.dumps(record)
    _, closed = find(lines, "PeriodClosed", period=4)

    result, code = replay_lines(tmp_path, lines)

    assert code == 1
    assert result.mismatches[0].block == closed["block"]  # nothing before the close differs
    at_close = {(m.event, m.field): m for m in result.mismatches if m.block == closed["block"]}
    utilization = at_close[("PeriodClosed", "inputs.utilizationBps")]
    assert (utilization.expected, utilization.recorded) == (6_500, 5_200)
    # at 65 % the model neither steps up nor calls for a top-up: the recorded ones differ
    assert at_close[("TopUpRequired", "(event)")].recorded == "emitted"
    assert at_close[("PeriodClosed", "result.newStepBps")].expected == 0
    assert ("PeriodClosed", "result.lowStreak") in at_close


def test_a_removed_event_is_reported_missing(demo_file, tmp_path):
    lines = lines_of(demo_file)
    i, record = find(lines, "CouponStepped", period=2)
    del lines[i]

    result, code = replay_lines(tmp_path, lines)

    assert code == 1
    assert [(m.event, m.field, m.expected, m.recorded) for m in result.mismatches] == [
        ("CouponStepped", "(event)", "emitted", "missing")
    ]
    assert result.mismatches[0].block == record["block"]
    assert result.mismatches[0].tx == record["tx"]


def test_a_removed_revenue_payment_shows_in_the_close(demo_file, tmp_path):
    lines = lines_of(demo_file)
    i, payment = find(lines, "RevenueReceived")
    del lines[i]
    _, closed = find(lines, "PeriodClosed", period=0)

    result, code = replay_lines(tmp_path, lines)

    assert code == 1
    first = result.mismatches[0]
    assert (first.block, first.event, first.field) == (
        closed["block"],
        "PeriodClosed",
        "inputs.revenueCash",
    )
    assert (first.expected, first.recorded) == (0, payment["args"]["amount"])


def test_reordered_lines_are_reported(demo_file, tmp_path):
    lines = lines_of(demo_file)
    i, _ = find(lines, "WaterfallDistributed", period=7)
    lines[i - 1], lines[i] = lines[i], lines[i - 1]  # PeriodClosed after its waterfall

    result, code = replay_lines(tmp_path, lines)

    assert code == 1
    moved = json.loads(lines[i])
    assert [(m.field, m.line, m.event) for m in result.mismatches] == [
        ("order", i + 1, "PeriodClosed")
    ]
    assert result.mismatches[0].recorded == f"block {moved['block']} log {moved['log_index']}"


def test_a_payment_moved_after_the_close_is_caught(demo_file, tmp_path):
    """Reordering that keeps the file sorted: revenue paid in after the period closed."""
    lines = lines_of(demo_file)
    _, closed = find(lines, "PeriodClosed", period=3)
    i, payment = find(
        lines, "RevenueReceived", periodRevenueCash=closed["args"]["inputs"]["revenueCash"]
    )
    del lines[i]
    j, flow = find(lines, "WaterfallDistributed", period=3)
    payment.update(block=flow["block"], timestamp=flow["timestamp"], tx=flow["tx"])
    payment["log_index"] = 10_000  # after everything the close emitted
    lines.insert(j + 1, json.dumps(payment))
    header, *events = lines
    events.sort(key=lambda line: (json.loads(line)["block"], json.loads(line)["log_index"]))
    lines = [header, *events]

    result, code = replay_lines(tmp_path, lines)

    assert code == 1
    first = result.mismatches[0]
    assert (first.event, first.field, first.expected) == ("PeriodClosed", "inputs.revenueCash", 0)
    assert first.block == closed["block"]


# ---------------------------------------------------------------------------
# Property: random histories
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prop(core, admin, issuer, operator, attestor, trustee, lenders, spv, signers, signer_keys):
    """A drawn note (senior 14M, junior 3M oversubscribed) on 1,000 H100s; one junior
    lender leaves its face in escrow; a senior amortization schedule."""
    start = core.usd.tx.block_number
    spec = DealSpec(
        tranches=[
            TrancheSpec(
                "Prop Senior",
                "PS",
                0,
                14_000_000 * USD,
                spread_bps=450,
                amortization=[(90 * DAY, 1_500), (150 * DAY, 3_000)],
            ),
            TrancheSpec("Prop Junior", "PJ", 1, 3_000_000 * USD, spread_bps=900),
        ],
        term_days=200,
        quorum=3,
    )
    if not core.oracle.hasRole(core.oracle.FLEET_ADMIN_ROLE(), admin):
        core.oracle.grantRole(core.oracle.FLEET_ADMIN_ROLE(), admin, {"from": admin})
    deal = open_deal(
        core,
        spec,
        admin=admin,
        issuer=issuer,
        operator=operator,
        trustee=trustee,
        fee_recipient=spv,
        signers=signers[:4],
    )
    senior, junior = deal.tranches
    leaves = make_fleet(1_000, in_service_at=chain[-1].timestamp - 1)
    batch_id, tree = pledge_fleet(core, deal, leaves, issuer, operator, attestor)
    for tranche, lender, amount in (
        (senior, lenders[0], 8_000_000),
        (senior, lenders[1], 6_000_000),
        (junior, lenders[2], 4_500_000),
    ):
        core.usd.approve(tranche, amount * USD, {"from": lender})
        tranche.requestDeposit(amount * USD, lender, lender, {"from": lender})
    for tranche in (senior, junior):
        close_subscription(tranche, issuer)
        tranche.fulfil(lenders, {"from": issuer})
        tranche.drawdown({"from": issuer})
    senior.claimShares({"from": lenders[0]})
    senior.claimShares({"from": lenders[1]})
    core.usd.approve(deal.servicer, 2**256 - 1, {"from": operator})
    deal.keys = signer_keys[:3]
    deal.leaves, deal.tree, deal.batch_id = leaves, tree, batch_id
    deal.manifest = manifest_of(
        core.registry,
        core.identities,
        core.oracle,
        [(deal.note_id, deal.servicer, deal.tranches)],
        start,
        core.factory,
    )
    return deal


UTILIZATION = st.one_of(
    st.sampled_from([9_700, 9_300, 9_000, 8_000, 6_000, 5_999, 4_000, 0]),
    st.integers(0, 10_000),
)
ACTION = st.one_of(
    st.tuples(
        st.just("transfer"),
        st.integers(0, 1),
        st.integers(0, 2),
        st.integers(0, 2),
        st.integers(1, 100),
    ),
    st.tuples(st.just("claim"), st.integers(0, 1), st.integers(0, 2)),
    st.tuples(st.just("redeem"), st.integers(0, 1), st.integers(0, 2)),
    st.tuples(st.just("cash"), st.integers(1, 3_000_000)),
    st.tuples(st.just("pledge"), st.integers(1, 120)),
    st.tuples(st.just("reference"), st.integers(0, 1_200)),
    st.tuples(st.just("haircut"), st.integers(0, 3_000)),
    st.tuples(st.just("sleep"), st.integers(1, 20 * DAY)),
    st.sampled_from(
        [
            ("cure",),
            ("default",),
            ("step_in",),
            ("claim_shares",),
            ("withdraw",),
            ("double_pledge",),
            ("release",),
        ]
    ),
)
PERIOD = st.fixed_dictionaries(
    {
        "revenue": st.lists(st.integers(1, 1_500_000), max_size=3),
        "refinance": st.sampled_from([False, False, False, True]),
        "utilization": UTILIZATION,
        "uptime": st.integers(9_700, 10_000),
        "reported_pct": st.integers(40, 160),
        "report": st.sampled_from(["on time", "on time", "on time", "late", "missed"]),
        "actions": st.lists(ACTION, max_size=4),
    }
)


class History:
    """Plays one random plan on the chain, skipping actions the contracts would refuse."""

    def __init__(
        self, core, deal, admin, issuer, operator, attestor, trustee, lenders, fees, anyone
    ):
        self.core, self.deal = core, deal
        self.admin, self.issuer, self.operator = admin, issuer, operator
        self.attestor, self.trustee, self.lenders, self.fees, self.anyone = (
            attestor,
            trustee,
            lenders,
            fees,
            anyone,
        )
        self.closes = 0
        self.batches = 0
        self.refused = 0

    def play(self, plan):
        for period, step in enumerate(plan):
            for amount in step["revenue"]:
                self.deal.servicer.payRevenue(amount * USD, {"from": self.operator})
            if step["refinance"]:
                self.deal.servicer.payRevenue(18_000_000 * USD, {"from": self.operator})
            for action in step["actions"]:
                self.attempt(action)
            self.report(period, step)
            self.deal.servicer.closePeriod({"from": self.anyone})
            self.closes += 1
        self.wind_up()

    def wind_up(self):
        """Lenders redeem and claim what they can; a repaid note is released."""
        for t in range(2):
            for i in range(3):
                self.attempt(("redeem", t, i))
                self.attempt(("claim", t, i))
        self.attempt(("withdraw",))
        self.attempt(("release",))

    def attempt(self, action):
        """An action whose preconditions were checked on views; a refusal emits nothing."""
        try:
            self.act(action)
        except VirtualMachineError:
            self.refused += 1  # e.g. a quarter's markdown between the view and the tx

    def report(self, period, step):
        deal = self.deal
        end = deal.genesis + (period + 1) * deal.spec.period_length
        if step["report"] != "on time":
            stale = end + deal.spec.heartbeat + 1
            if chain[-1].timestamp < stale:
                chain.sleep(stale - chain[-1].timestamp)
                chain.mine()
        if step["report"] == "missed" or self.core.oracle.fleet(deal.note_id)[6] != period:
            return
        cash = self.deal.servicer.periodRevenueCash()
        submit_report(
            self.core,
            deal,
            period,
            deal.keys,
            utilization=step["utilization"],
            uptime=step["uptime"],
            revenue=cash * step["reported_pct"] // 100,
            sender=self.anyone,
        )

    def act(self, action):
        kind = action[0]
        deal, core = self.deal, self.core
        servicer = deal.servicer
        if kind == "transfer":
            _, t, i, j, pct = action
            tranche = deal.tranches[t]
            balance = tranche.balanceOf(self.lenders[i])
            if balance and i != j:
                tranche.transfer(self.lenders[j], balance * pct // 100, {"from": self.lenders[i]})
        elif kind == "claim":
            tranche, lender = deal.tranches[action[1]], self.lenders[action[2]]
            # couponClaimable counts the escrow's share of unclaimed face, which
            # claimCoupon does not pay before claimShares (docs/audit.md)
            if tranche.couponClaimable(lender) and not any(tranche.fillOf(lender)):
                tranche.claimCoupon({"from": lender})
        elif kind == "redeem":
            tranche, lender = deal.tranches[action[1]], self.lenders[action[2]]
            repaid_face = tranche.isRepaid() and tranche.balanceOf(lender)
            if tranche.principalClaimable(lender) or repaid_face:
                tranche.redeem({"from": lender})
        elif kind == "cash":
            servicer.postCashCollateral(action[1] * USD, {"from": self.operator})
        elif kind == "pledge":
            if core.registry.noteInfo(deal.note_id)[2] == 1:
                self.batches += 1
                leaves = make_fleet(
                    action[1],
                    in_service_at=chain[-1].timestamp - 1,
                    serial_prefix=f"P{self.batches}-",
                )
                pledge_fleet(core, deal, leaves, self.issuer, self.operator, self.attestor)
        elif kind == "reference":
            pass  # the reference rate is a term now: no setter left to call
        elif kind == "haircut":
            core.registry.setModel(H100, 1, action[1], {"from": self.admin})
        elif kind == "sleep":
            chain.sleep(action[1])
        elif kind == "cure":
            required, deadline = servicer.topUp()
            value, cash = servicer.collateral()
            if deadline and value + cash >= required:
                servicer.cureTopUp({"from": self.anyone})
        elif kind == "default":
            required, deadline = servicer.topUp()
            value, cash = servicer.collateral()
            late = chain[-1].timestamp + 1 > deadline
            if servicer.status() == 0 and deadline and late and value + cash < required:
                servicer.declareDefault({"from": self.anyone})
        elif kind == "step_in":
            if servicer.status() == 1 and core.registry.noteInfo(deal.note_id)[2] == 1:
                servicer.stepIn({"from": self.trustee})
        elif kind == "claim_shares":
            junior = deal.tranches[1]
            if any(junior.fillOf(self.lenders[2])):
                junior.claimShares({"from": self.lenders[2]})
        elif kind == "withdraw":
            for account in (self.fees, self.operator):
                if servicer.withdrawable(account):
                    servicer.withdraw({"from": account})
        elif kind == "double_pledge":
            self.double_pledge()
        elif kind == "release":
            self.release()

    def release(self):
        deal = self.deal
        live = self.core.registry.noteInfo(deal.note_id)[2] in (1, 3)
        if live and all(t.isRepaid() for t in deal.tranches):
            deal.servicer.releaseCollateral({"from": self.anyone})

    def double_pledge(self):
        """Tries to register a batch repeating GPU 0 of the fleet (reverts:
        held), then pledges a batch with a planted bad leaf and proves it: the
        new batch is voided and the note counts a defect."""
        deal, core = self.deal, self.core
        if core.registry.noteInfo(deal.note_id)[2] != 1:
            return
        self.batches += 1
        extra = make_fleet(
            3, in_service_at=chain[-1].timestamp - 1, serial_prefix=f"D{self.batches}-"
        )
        with brownie.reverts():
            repeated = [*extra[:2], replace(deal.leaves[0], index=2)]
            register_batch(core, self.issuer, self.operator, repeated)
        bad = replace(extra[2], index=7)
        leaves = [extra[0], extra[1], bad]
        tree = MerkleTree(leaves)
        registration = (
            self.issuer,
            tree.root,
            3,
            sum(leaf.cost for leaf in leaves),
            extra[0].model,
            extra[0].in_service_at,
            text_id("docs"),
        )
        tx = core.registry.registerBatch(registration, {"from": self.operator})
        batch_id = tx.events["BatchRegistered"]["batchId"]
        keys = [leaf.gpu_key for leaf in extra]
        core.registry.registerGpus(batch_id, keys, {"from": self.operator})
        core.registry.attestBatch(batch_id, text_id("attested"), {"from": self.attestor})
        core.registry.pledgeBatch(batch_id, deal.note_id, {"from": self.operator})
        core.registry.proveBadLeaf(batch_id, bad.as_tuple(), tree.proof(2), {"from": self.anyone})


def assert_model_matches_views(replayer, core, deal, lenders, fees, operator):
    """The model's end state equals what the contracts report (views at the latest block)."""
    now = chain[-1].timestamp
    servicer = replayer.servicers[deal.servicer.address.lower()]
    assert servicer.reserve == deal.servicer.reserveBalance()
    assert servicer.trapped == deal.servicer.trappedCash()
    assert servicer.fee_arrears == deal.servicer.feeArrears()
    assert servicer.period_revenue == deal.servicer.periodRevenueCash()
    assert (servicer.topup_required, servicer.topup_deadline) == tuple(deal.servicer.topUp())
    assert servicer.status == deal.servicer.status()
    step, high, low, on = deal.servicer.stepState()
    assert (servicer.step, servicer.high_streak, servicer.low_streak, servicer.low_step_on) == (
        step,
        high,
        low,
        on,
    )
    assert servicer.fees_payable == deal.servicer.withdrawable(fees)
    assert servicer.equity_payable == deal.servicer.withdrawable(operator)
    value, cash = deal.servicer.collateral()
    assert servicer.cash_collateral == cash
    assert replayer.registry.collateral_value(deal.note_id, now) == value
    for tranche in deal.tranches:
        model = replayer.tranches[tranche.address.lower()]
        assert model.rate == tranche.currentRateBps()
        assert model.outstanding == tranche.principalOutstanding()
        assert model.interest_due(now) == tranche.interestDue()
        assert model.principal_due(now) == tranche.principalDue()
        assert model.state == tranche.state()
        assert model.total_supply == tranche.totalSupply()
        for lender in lenders:
            if any(tranche.fillOf(lender)):
                continue  # face still in escrow: the views add the escrow's share
            assert model.holder(lender.address).balance == tranche.balanceOf(lender)
            funded, pending = model.entitlement(lender.address, now)
            assert funded == tranche.couponClaimable(lender)
            assert funded + pending == tranche.couponOwed(lender)


def test_random_histories_replay_with_zero_mismatches(
    prop, core, admin, issuer, operator, attestor, trustee, lenders, spv, rando
):
    seen = {"closes": 0, "events": set()}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(plan=st.integers(1, 7).flatmap(lambda n: st.lists(PERIOD, min_size=n, max_size=n)))
    def run(plan):  # brownie's `given` reverts the chain to the set-up before each history
        history = History(
            core, prop, admin, issuer, operator, attestor, trustee, lenders, spv, rando
        )
        history.play(plan)
        exported = export_events(fresh_web3(), Manifest.from_dict(prop.manifest))
        replayer = Replayer(exported.header)
        result = replayer.run([dict(ev) for ev in exported.events])
        assert [m.describe() for m in result.mismatches] == []
        assert result.closes == history.closes == len(plan)
        chain.mine()  # views then run at a block of their own
        assert_model_matches_views(replayer, core, prop, lenders, spv, operator)
        seen["closes"] += result.closes
        seen["events"].update(ev["event"] for ev in exported.events)

    run()
    print(f"\n{EXAMPLES} histories, {seen['closes']} closes; events: {sorted(seen['events'])}")
    assert seen["closes"] >= EXAMPLES
    assert {"PeriodClosed", "WaterfallDistributed", "Paid", "RevenueReceived"} <= seen["events"]


def test_write_jsonl_roundtrip_keeps_every_field(prop, tmp_path):
    exported = export_events(fresh_web3(), Manifest.from_dict(prop.manifest))
    path = tmp_path / "prop.jsonl"
    write_jsonl(exported, path)
    loaded = read_jsonl(path)
    assert loaded.header == json.loads(json.dumps(exported.header))
    assert [{k: v for k, v in e.items() if k != "line"} for e in loaded.events] == exported.events
    assert replay(loaded).mismatches == []


# ---------------------------------------------------------------------------
# Contract behaviour the README does not spell out (docs/audit.md, "Observations")
# ---------------------------------------------------------------------------


def close_period(core, deal, period, operator, anyone, utilization, revenue=1_000_000):
    deal.servicer.payRevenue(revenue * USD, {"from": operator})
    submit_report(
        core,
        deal,
        period,
        deal.keys,
        utilization=utilization,
        uptime=9_950,
        revenue=revenue * USD,
        sender=anyone,
    )
    return deal.servicer.closePeriod({"from": anyone})


def replay_clean(deal):
    exported = export_events(fresh_web3(), Manifest.from_dict(deal.manifest))
    result = replay_events(exported.header, exported.events)
    assert [m.describe() for m in result.mismatches] == []
    return result


def test_low_utilization_alone_blocks_equity(prop, core, operator, rando):
    """README blocks equity "while any covenant is breached" (DSCR, LTV, uptime,
    freshness); the contract also blocks it for low utilization alone."""
    prop.servicer.postCashCollateral(2_000_000 * USD, {"from": operator})  # LTV 17/27 = 63 %
    tx = close_period(core, prop, 0, operator, rando, utilization=5_500)
    result = tx.events["PeriodClosed"]["result"]
    assert result["breaches"] == 16  # BREACH_LOW_UTILIZATION only: no covenant breached
    assert result["ltvBps"] <= result["ltvLimitBps"] == 6_500 and "TopUpRequired" not in tx.events
    assert result["equityBlocked"]
    flow = tx.events["WaterfallDistributed"]["result"]
    assert flow["equity"] == 0 and flow["trapped"] > 0
    replay_clean(prop)


def test_recorded_at_of_a_missed_report_depends_on_who_marked_it(prop, core, operator, rando):
    """`PeriodClosed.inputs.reportRecordedAt` is 0 when the close marks the period
    missed, but the marking time when `markMissed` was called first."""
    stale = prop.genesis + prop.spec.period_length + prop.spec.heartbeat + 1
    chain.sleep(stale - chain[-1].timestamp)
    chain.mine()
    tx = prop.servicer.closePeriod({"from": rando})
    assert "ReportMissed" in tx.events
    assert tx.events["PeriodClosed"]["inputs"]["reportRecordedAt"] == 0

    chain.sleep(prop.spec.period_length)
    marked = core.oracle.markMissed(prop.note_id, {"from": rando})
    tx = prop.servicer.closePeriod({"from": rando})
    recorded = tx.events["PeriodClosed"]["inputs"]["reportRecordedAt"]
    assert recorded == marked.timestamp == core.oracle.report(prop.note_id, 1)["recordedAt"]
    assert replay_clean(prop).closes == 2


def test_claim_coupon_pays_what_coupon_claimable_shows_for_escrowed_face(
    prop, core, operator, rando, lenders
):
    """`couponClaimable` includes the coupon a lender's unclaimed face earned in
    escrow, and `claimCoupon` pays exactly that, moving the face out first."""
    junior, lender = prop.tranches[1], lenders[2]
    close_period(core, prop, 0, operator, rando, utilization=8_000, revenue=2_000_000)
    assert any(junior.fillOf(lender)) and junior.balanceOf(lender) == 0
    claimable = junior.couponClaimable(lender)
    assert claimable > 0
    tx = junior.claimCoupon({"from": lender})
    assert tx.events["EscrowedFaceClaimed"]["shares"] == junior.balanceOf(lender) > 0
    assert tx.events["CouponClaimed"]["amount"] == claimable
    replay_clean(prop)


def test_an_event_no_decision_reads_is_caught_by_the_chain_comparison(demo, demo_file, tmp_path):
    """Removing a tranche's guardian `RoleGranted` leaves every decision intact;
    `--verify-chain` still finds the file differs from the chain, at the exact log."""
    lines = lines_of(demo_file)
    guardian = "0x" + keccak(text="GUARDIAN_ROLE").hex().removeprefix("0x")
    i, record = find(lines, "RoleGranted", role=guardian)
    del lines[i]
    result, code = replay_lines(tmp_path, lines)
    assert result.mismatches == [] and code == 0

    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(demo))
    out = tmp_path / "verify.json"
    cli = CliRunner().invoke(
        audit_app,
        [
            "replay",
            "--events",
            str(tmp_path / "tampered.jsonl"),
            "--verify-chain",
            "--manifest",
            str(manifest),
            "--rpc",
            rpc_url(),
            "--json",
            str(out),
        ],
    )
    assert cli.exit_code == 1, cli.output
    differences = json.loads(out.read_text())["archive_differences"]
    assert [(d["event"], d["field"], d["recorded"]) for d in differences] == [
        ("RoleGranted", "(event)", "missing")
    ]
    assert (differences[0]["block"], differences[0]["log_index"]) == (
        record["block"],
        record["log_index"],
    )


def test_timelocked_changes_and_the_pause_replay_and_a_skipped_timelock_is_caught(
    prop, core, admin, issuer, signers
):
    """The emergency controls' events replay clean: a haircut raised at once, a
    cut queued, cancelled, queued again and executed after the 2-day timelock, a
    slower markdown the same way, a signer-set change through its timelock, the
    guardian's pause and unpause, an admin hand-over scheduled. An exported file
    without the queue event of the executed cut shows the cut as skipping the
    timelock; one whose executions land after eta + GRACE_PERIOD shows each
    queued change as expired."""
    registry, oracle, senior = core.registry, core.oracle, prop.senior
    registry.setModel(H100, 1, 2_000, {"from": admin})  # more conservative: at once
    registry.setModel(H100, 1, 500, {"from": admin})  # a cut: queued
    registry.cancelModel(H100, {"from": admin})
    queued = registry.setModel(H100, 1, 1_000, {"from": admin})
    registry.setDepreciationClass(1, 400, 0, {"from": admin})  # slower markdown: queued
    new_set = signer_order([str(s) for s in signers[:4]])
    oracle.queueSignerChange(prop.note_id, new_set, 3, {"from": admin})
    operator_before = oracle.fleet(prop.note_id)["operator"]
    oracle.queueOperatorChange(prop.note_id, admin, {"from": admin})
    oracle.cancelOperatorChange(prop.note_id, {"from": admin})
    operator_queued = oracle.queueOperatorChange(prop.note_id, operator_before, {"from": admin})
    senior.pause({"from": issuer})
    senior.unpause({"from": issuer})
    registry.beginDefaultAdminTransfer(issuer, {"from": admin})
    chain.sleep(2 * DAY + 1)
    chain.mine()
    executed = registry.executeModel(H100, {"from": admin})
    registry.executeDepreciationClass(1, {"from": admin})
    oracle.executeSignerChange(prop.note_id, {"from": admin})
    oracle.executeOperatorChange(prop.note_id, {"from": admin})
    assert registry.modelInfo(H100)["haircutBps"] == 1_000
    assert oracle.fleet(prop.note_id)["quorum"] == 3

    result = replay_clean(prop)
    assert result.fields_checked > 0

    exported = export_events(fresh_web3(), Manifest.from_dict(prop.manifest))
    skipped = [
        ev
        for ev in exported.events
        if not (ev["event"] == "ModelQueued" and ev["tx"] == queued.txid)
    ]
    assert len(skipped) == len(exported.events) - 1
    mismatches = replay_events(exported.header, skipped).mismatches
    assert [(m.event, m.field, m.recorded) for m in mismatches] == [
        ("ModelSet", "model change after its timelock", "ValuationChangeNotReady")
    ]
    # the operator key (whose telemetry the nodes accept) is held to the same timelock
    skipped = [
        ev
        for ev in exported.events
        if not (ev["event"] == "OperatorChangeQueued" and ev["tx"] == operator_queued.txid)
    ]
    mismatches = replay_events(exported.header, skipped).mismatches
    assert [(m.event, m.field, m.recorded) for m in mismatches] == [
        ("FleetOperatorChanged", "operator change after its timelock", "OperatorChangeNotReady")
    ]
    # a file in which the four executions land after their deadline (eta + 7 days):
    # each is an expired change the contracts refuse
    first = next(i for i, ev in enumerate(exported.events) if ev["tx"] == executed.txid)
    late = [
        {**ev, "timestamp": ev["timestamp"] + 7 * DAY} if i >= first else ev
        for i, ev in enumerate(exported.events)
    ]
    mismatches = replay_events(exported.header, late).mismatches
    assert [(m.event, m.field, m.recorded) for m in mismatches] == [
        ("ModelSet", "model change by its deadline", "ValuationChangeExpired"),
        ("DepreciationClassSet", "class change by its deadline", "ValuationChangeExpired"),
        ("SignersChanged", "signer change by its deadline", "SignerChangeExpired"),
        ("FleetOperatorChanged", "operator change by its deadline", "OperatorChangeExpired"),
    ]


def test_the_factory_creation_is_replayed_and_a_rewired_note_is_caught(demo_file, tmp_path):
    """The note's wiring comes from the factory's one creation transaction: a
    file claiming other tranches (or wiring outside that transaction) fails."""
    lines = lines_of(demo_file)
    i, record = find(lines, "NoteCreated")
    assert len(record["args"]["tranches"]) == 2
    record["args"]["tranches"] = list(reversed(record["args"]["tranches"]))
    lines[i] = json.dumps(record)
    result, code = replay_lines(tmp_path, lines)
    assert code == 1
    assert [(m.event, m.field) for m in result.mismatches] == [("NoteCreated", "tranches")]


def test_registry_claims_rejections_and_defects_replay_and_a_forged_claim_is_caught(
    prop, core, admin, issuer, operator, attestor, rando
):
    """A squatter's batch holding the real fleet's keys, rejected; the real
    fleet registered in chunks, attested, pledged; a batch with a planted bad
    leaf voided (a defect on the note); a new model through its timelock: all
    replay clean. A file in which a second batch claims a key the first still
    holds shows `GpuHeld`."""
    registry = core.registry
    now = chain[-1].timestamp
    fleet = make_fleet(6, in_service_at=now - 1, serial_prefix="REPLAY-")
    squat, _, _ = register_batch(core, issuer, rando_operator(core, admin, rando), fleet, chunk=4)
    registry.rejectBatch(squat, {"from": attestor})
    owner, _, _ = register_batch(core, issuer, operator, fleet, chunk=4)
    registry.attestBatch(owner, text_id("attested"), {"from": attestor})
    registry.pledgeBatch(owner, prop.note_id, {"from": operator})
    bad_fleet = make_fleet(2, in_service_at=now - 1, serial_prefix="REPLAY-BAD-")
    bad = replace(bad_fleet[1], index=5)
    tree = MerkleTree([bad_fleet[0], bad])
    header = (issuer, tree.root, 2, 2 * bad.cost, bad.model, bad.in_service_at, text_id("d"))
    batch = registry.registerBatch(header, {"from": operator}).events["BatchRegistered"]["batchId"]
    registry.registerGpus(batch, [leaf.gpu_key for leaf in bad_fleet], {"from": operator})
    registry.attestBatch(batch, text_id("attested"), {"from": attestor})
    registry.pledgeBatch(batch, prop.note_id, {"from": operator})
    tx = registry.proveBadLeaf(batch, bad.as_tuple(), tree.proof(1), {"from": rando})
    assert "NoteDefectProven" in tx.events
    model = text_id("NVIDIA GB300")
    registry.setModel(model, 0, 1_000, {"from": admin})
    chain.sleep(2 * DAY + 1)
    chain.mine()
    registry.executeModel(model, {"from": admin})
    replay_clean(prop)

    exported = export_events(fresh_web3(), Manifest.from_dict(prop.manifest))
    rejected = [ev for ev in exported.events if ev["event"] != "BatchRejected"]
    mismatches = replay_events(exported.header, rejected).mismatches
    held = [m for m in mismatches if m.event == "GpusRegistered"]
    assert held and "GpuHeld" in held[0].recorded


def rando_operator(core, admin, rando):
    """`rando` as a second (squatting) operator."""
    core.registry.grantRole(core.registry.OPERATOR_ROLE(), rando, {"from": admin})
    return rando
