"""Stateful test of the collateral registry against a Python model of its leaves.

Two issuers, each financed by its own operator, pledge batches drawn from one
small pool of GPU serials, so the same GPU often lands in two live batches
(across issuers, or twice in one batch). A rule applies every fraud proof the
model can find; notes are released (and replaced by a new note) or stepped
in; time passes. After every step:

- the chain's view of which batches are live matches the model's;
- once every provable conflict has been proven, no GPU is in two live,
  non-voided batches;
- each note's collateral value equals the model's valuation, is never
  negative, and never increases unless a batch was pledged.

The machine is a plain Hypothesis `RuleBasedStateMachine` rather than one
built by brownie's `state_machine` fixture: brownie 1.22 ships
`brownie.test.stateful` compiled with mypyc, and the compiled base class
rejects the subclass that fixture generates ("_BrownieStateMachine object
expected"). The chain handling is the fixture's: a snapshot before the
runs, a revert at the start of each. By default 50 full-length sequences
of 10 steps; GPUCREDIT_FUZZ_EXAMPLES and GPUCREDIT_FUZZ_STEPS override them
(`make fuzz`, tests/stateful/conftest.py).
"""

import brownie
import pytest
from brownie import chain
from brownie.test import strategy
from brownie_patches import read_views
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from gpucredit.merkle import GpuLeaf, MerkleTree, gpu_key, text_id

QUARTER = 7_889_400
BPS = 10_000
MARKDOWN_BPS = {0: 1_667, 1: 500, 2: 375}  # the registry's default classes, floor 0
SERIALS = [f"GPU-{i}" for i in range(6)]
MODEL = text_id("NVIDIA H100 SXM5 80GB")
SITE = text_id("ams-1")
DOCS = text_id("attestation")
GPU_COST = 25_000_000_000

NOTE_OPEN, NOTE_RELEASED, NOTE_STEPPED_IN = 1, 2, 3
MAX_BATCHES_PER_NOTE = 32  # live batches only: voided ones free their slot


@pytest.fixture(autouse=True)
def isolation(fn_isolation):
    """Reverts the chain after the test."""


@pytest.fixture(scope="module")
def admin(accounts):
    return accounts[0]


@pytest.fixture(scope="module")
def issuers(accounts):
    return [accounts[1], accounts[4]]


@pytest.fixture(scope="module")
def operators(accounts):
    """`operators[i]` runs the fleet financed by `issuers[i]`."""
    return [accounts[2], accounts[5]]


@pytest.fixture(scope="module")
def attestor(accounts):
    return accounts[3]


@pytest.fixture(scope="module")
def manager(accounts):
    return accounts[6]


@pytest.fixture(scope="module")
def trustee(accounts):
    return accounts[7]


@pytest.fixture(scope="module")
def rando(accounts):
    return accounts[9]


@pytest.fixture(scope="module")
def registry(CollateralRegistry, admin, issuers, operators, attestor):
    registry = CollateralRegistry.deploy(admin, {"from": admin})
    # the admin stands in for the NoteFactory
    registry.grantRole(registry.NOTE_FACTORY_ROLE(), admin, {"from": admin})
    for issuer in issuers:
        registry.grantRole(registry.ISSUER_ROLE(), issuer, {"from": admin})
    for operator in operators:
        registry.grantRole(registry.OPERATOR_ROLE(), operator, {"from": admin})
    registry.grantRole(registry.ATTESTOR_ROLE(), attestor, {"from": admin})
    return registry


class ModelBatch:
    """What the model knows of one pledged batch."""

    def __init__(self, batch_id, note_id, leaves, tree, class_id, in_service_at):
        self.batch_id = batch_id
        self.note_id = note_id
        self.leaves = leaves
        self.tree = tree
        self.class_id = class_id
        self.in_service_at = in_service_at
        self.total_cost = sum(leaf.cost for leaf in leaves)
        self.voided = False

    def value(self, now):
        if self.voided:
            return 0
        quarters = max(0, now - self.in_service_at) // QUARTER
        factor = max(0, BPS - quarters * MARKDOWN_BPS[self.class_id])
        return self.total_cost * factor * BPS // BPS**2


st_issuer = strategy("uint8", max_value=1)
st_mask = strategy("uint8", min_value=1, max_value=2 ** len(SERIALS) - 1)
st_duplicate = strategy("bool")
st_class = strategy("uint8", max_value=2)
st_age = strategy("uint32", max_value=6 * QUARTER)
st_seconds = strategy("uint32", min_value=1, max_value=QUARTER)


class RegistryStateMachine(RuleBasedStateMachine):
    """Rules drawn by Hypothesis; the model mirrors every leaf pledged.

    The contracts and accounts are class attributes, bound by the test.
    """

    registry = issuers = operators = attestor = manager = trustee = rando = None
    admin = stub_container = None
    initial_notes = ()  # one open note per issuer, in the snapshot

    def __init__(self):
        super().__init__()
        chain.revert()  # back to the snapshot the test took before the runs
        self.batches = []
        self.note_status = {note_id: NOTE_OPEN for note_id in self.initial_notes}
        self.current_note = list(self.initial_notes)
        self.pledged_since_check = False
        self.all_proven = True
        self.last_values = {}

    # ---- helpers ----

    @classmethod
    def open_note(cls, issuer_index):
        """Opens and binds a note of the issuer with its own tranche stub."""
        registry, admin = cls.registry, cls.admin
        tx = registry.openNote(cls.issuers[issuer_index], {"from": admin})
        note_id = tx.events["NoteOpened"]["noteId"]
        stub = cls.stub_container.deploy({"from": admin})
        operators = [cls.operators[issuer_index]]
        registry.bindNote(note_id, cls.manager, [stub], operators, {"from": admin})
        cls.stubs[note_id] = stub
        return note_id

    def _open_note(self, issuer_index):
        note_id = self.open_note(issuer_index)
        self.note_status[note_id] = NOTE_OPEN
        return note_id

    def _live(self, batch):
        return not batch.voided and self.note_status[batch.note_id] in (
            NOTE_OPEN,
            NOTE_STEPPED_IN,
        )

    def _conflict(self):
        """The first pair of live leaves sharing a GPU, in the model."""
        seen = {}
        for batch in self.batches:
            if not self._live(batch):
                continue
            for position, leaf in enumerate(batch.leaves):
                if leaf.gpu_key in seen:
                    return seen[leaf.gpu_key], (batch, position)
                seen[leaf.gpu_key] = (batch, position)
        return None

    # ---- rules ----

    @rule(issuer_index=st_issuer, mask=st_mask, duplicate=st_duplicate)
    def pledge(self, issuer_index, mask, duplicate):
        """Register, attest and pledge a batch of the pool's GPUs."""
        self._pledge(issuer_index, mask, duplicate, class_id=0, age=0)

    @rule(issuer_index=st_issuer, mask=st_mask, class_id=st_class, age=st_age)
    def pledge_aged(self, issuer_index, mask, class_id, age):
        """Same, for an older fleet of any class."""
        self._pledge(issuer_index, mask, False, class_id=class_id, age=age)

    def _pledge(self, issuer_index, mask, duplicate, *, class_id, age):
        serials = [serial for bit, serial in enumerate(SERIALS) if mask >> bit & 1]
        if duplicate:
            serials.append(serials[0])
        in_service_at = chain[-1].timestamp - age
        leaves = [
            GpuLeaf(
                index=i,
                gpu_key=gpu_key("NVIDIA", serial),
                model=MODEL,
                site_id=SITE,
                attestation_hash=DOCS,
                cost=GPU_COST + i,
                in_service_at=in_service_at,
                class_id=class_id,
            )
            for i, serial in enumerate(serials)
        ]
        tree = MerkleTree(leaves)
        registration = (
            self.issuers[issuer_index],
            tree.root,
            len(leaves),
            sum(leaf.cost for leaf in leaves),
            MODEL,
            class_id,
            in_service_at,
            DOCS,
        )
        operator = self.operators[issuer_index]
        tx = self.registry.registerBatch(registration, {"from": operator})
        batch_id = tx.events["BatchRegistered"]["batchId"]
        self.registry.attestBatch(batch_id, DOCS, {"from": self.attestor})
        note_id = self.current_note[issuer_index]
        live = sum(b.note_id == note_id and not b.voided for b in self.batches)
        if live >= MAX_BATCHES_PER_NOTE:
            # a long run fills the note: the registry refuses, the batch stays unpledged
            with brownie.reverts(f"NoteBatchLimitReached: {note_id}, {MAX_BATCHES_PER_NOTE}"):
                self.registry.pledgeBatch(batch_id, note_id, {"from": operator})
            return
        self.registry.pledgeBatch(batch_id, note_id, {"from": operator})
        self.batches.append(ModelBatch(batch_id, note_id, leaves, tree, class_id, in_service_at))
        self.pledged_since_check = True
        self.all_proven = self._conflict() is None

    @rule()
    def prove_all(self):
        """Apply every double-pledge proof the model can find."""
        while (conflict := self._conflict()) is not None:
            (batch_a, i), (batch_b, j) = conflict
            tx = self.registry.proveDoublePledge(
                batch_a.batch_id,
                batch_a.leaves[i].as_tuple(),
                batch_a.tree.proof(i),
                batch_b.batch_id,
                batch_b.leaves[j].as_tuple(),
                batch_b.tree.proof(j),
                {"from": self.rando},
            )
            voided = max(batch_a, batch_b, key=lambda batch: batch.batch_id)
            assert tx.events["DoublePledgeProven"]["voidedBatchId"] == voided.batch_id
            voided.voided = True
        self.all_proven = True

    @rule(issuer_index=st_issuer)
    def release(self, issuer_index):
        """The note's tranche is repaid and anyone releases the note; the
        issuer opens a new one."""
        note_id = self.current_note[issuer_index]
        self.stubs[note_id].setRepaid(True, {"from": self.admin})
        self.registry.releaseNote(note_id, {"from": self.rando})
        self.note_status[note_id] = NOTE_RELEASED
        # a released note never counts again (its status is final)
        assert self.registry.collateralValue(note_id) == 0
        self.current_note[issuer_index] = self._open_note(issuer_index)

    @rule(issuer_index=st_issuer)
    def step_in(self, issuer_index):
        """The trustee steps in; the issuer finances new batches on a new note."""
        note_id = self.current_note[issuer_index]
        self.registry.transferLiens(note_id, self.trustee, {"from": self.manager})
        self.note_status[note_id] = NOTE_STEPPED_IN
        self.current_note[issuer_index] = self._open_note(issuer_index)

    @rule(seconds=st_seconds)
    def advance_time(self, seconds):
        chain.sleep(seconds)
        chain.mine()

    # ---- invariants ----

    @invariant()
    def liveness_matches_model(self):
        pledges = read_views(*((self.registry.livePledgeOf, b.batch_id) for b in self.batches))
        for batch, pledge in zip(self.batches, pledges, strict=True):
            assert pledge == (self._live(batch), batch.note_id)

    @invariant()
    def no_gpu_in_two_live_batches_once_proven(self):
        if not self.all_proven:
            return
        # liveness as the model has it, which `liveness_matches_model` checks
        # against the chain after every step
        keys = [
            leaf.gpu_key for batch in self.batches if self._live(batch) for leaf in batch.leaves
        ]
        assert len(keys) == len(set(keys))

    @invariant()
    def collateral_value_matches_model(self):
        now = chain[-1].timestamp
        # a released note is checked once, on release: its status is final
        notes = [note for note, status in self.note_status.items() if status != NOTE_RELEASED]
        on_chain = read_views(*((self.registry.collateralValue, note) for note in notes))
        values = dict(zip(notes, on_chain, strict=True))
        for note_id, value in values.items():
            expected = sum(batch.value(now) for batch in self.batches if batch.note_id == note_id)
            assert value == expected >= 0
            if not self.pledged_since_check and note_id in self.last_values:
                assert value <= self.last_values[note_id]
        self.last_values = values
        self.pledged_since_check = False


def test_registry_stateful(
    run_machine, registry, admin, TrancheStub, issuers, operators, attestor, manager, trustee, rando
):
    machine = RegistryStateMachine
    machine.admin, machine.stub_container, machine.stubs = admin, TrancheStub, {}
    machine.registry, machine.issuers, machine.operators = registry, issuers, operators
    machine.attestor, machine.manager, machine.trustee, machine.rando = (
        attestor,
        manager,
        trustee,
        rando,
    )
    machine.initial_notes = tuple(machine.open_note(i) for i in range(len(issuers)))
    chain.snapshot()
    run_machine(machine, examples=50, steps=10)
