"""Stateful test of the collateral registry with an adversarial operator and issuer.

Two issuers, three operators and a small pool of GPU serials: every rule may
be played by anyone, in any order, honestly or not. Operators register
batches in random chunk sizes, reuse serials already held elsewhere, plant
duplicates and leaves that contradict their header or their key list, pledge
into notes that never named them, prove their own fraud, and get rejected;
attestors attest or reject; notes are repaid and released, or stepped in and
released by the trustee; time passes.

The invariants are the registry's promises, read from chain state alone (the
batches' keys from their `GpusRegistered` events, everything else from views),
never from a Python model of the registry:

- for every GPU key, at most one live pledge holds it, and it is the batch
  the key's slot names, blocking;
- every batch pledged to a live note (voided or not) still holds all its
  GPUs: a GPU is freed only by the release of its note (repayment, or the
  lienholder after a step-in);
- a note's collateral value never drops between two steps except when time
  passes (depreciation, or the valuation), when a defect is proven in one of
  *its own* batches, or when it is released.

The machine is a plain Hypothesis `RuleBasedStateMachine` (see
tests/stateful/conftest.py for why); a snapshot before the runs, a revert at
the start of each. By default 20 sequences of 20 steps; GPUCREDIT_FUZZ_EXAMPLES
and GPUCREDIT_FUZZ_STEPS override them (`make fuzz`).
"""

import ast
from dataclasses import replace

import brownie
import pytest
from brownie import chain
from brownie.test import strategy
from brownie_patches import read_views
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from gpucredit.merkle import GpuLeaf, MerkleTree, gpu_key, key_chunks, text_id

DAY = 86_400
SERIALS = [f"GPU-{i}" for i in range(8)]
MODELS = [text_id("NVIDIA B200 SXM 180GB"), text_id("NVIDIA H100 SXM5 80GB")]
SITE = text_id("ams-1")
DOCS = text_id("attestation")
GPU_COST = 25_000_000_000
NOTE_OPEN, NOTE_RELEASED, NOTE_STEPPED_IN = 1, 2, 3
REPAID = 3
LIVE = (NOTE_OPEN, NOTE_STEPPED_IN)
PLEDGED, VOIDED = 4, 5


@pytest.fixture(autouse=True)
def isolation(fn_isolation):
    """Reverts the chain after the test."""


@pytest.fixture(scope="module")
def cast(accounts):
    return {
        "admin": accounts[0],
        "issuers": [accounts[1], accounts[4]],
        "operators": [accounts[2], accounts[5], accounts[8]],
        "attestor": accounts[3],
        "servicer": accounts[6],
        "trustee": accounts[7],
        "rando": accounts[9],
    }


@pytest.fixture(scope="module")
def registry(CollateralRegistry, cast):
    admin = cast["admin"]
    registry = CollateralRegistry.deploy(admin, {"from": admin})
    registry.grantRole(registry.NOTE_FACTORY_ROLE(), admin, {"from": admin})  # the NoteFactory
    for issuer in cast["issuers"]:
        registry.grantRole(registry.ISSUER_ROLE(), issuer, {"from": admin})
    for operator in cast["operators"]:
        registry.grantRole(registry.OPERATOR_ROLE(), operator, {"from": admin})
    registry.grantRole(registry.ATTESTOR_ROLE(), cast["attestor"], {"from": admin})
    return registry


st_index = strategy("uint8", max_value=7)
st_mask = strategy("uint8", min_value=1, max_value=2 ** len(SERIALS) - 1)
st_chunk = strategy("uint8", min_value=1, max_value=4)
st_flaw = strategy("uint8", max_value=3)  # 0 honest, 1 duplicate key, 2 bad index, 3 key mismatch
st_seconds = strategy("uint32", min_value=DAY, max_value=20 * DAY)


class Batch:
    """What the test sent for one batch (its keys as the chain logged them)."""

    def __init__(self, batch_id, operator, issuer, leaves, tree, keys, flaw, chunk):
        self.chunk = chunk
        self.batch_id = batch_id
        self.operator = operator
        self.issuer = issuer
        self.leaves = leaves
        self.tree = tree
        self.keys = keys  # from the GpusRegistered events
        self.flaw = flaw


class RegistryMachine(RuleBasedStateMachine):
    registry = cast = stub_container = None
    initial_notes = ()

    def __init__(self):
        super().__init__()
        chain.revert()
        self.batches = {}  # batch id -> Batch
        self.notes = list(self.initial_notes)  # (note id, issuer index, stub)
        self.values = {}
        self.defects = {}
        self.statuses = {}
        self.time_passed = False

    # ---- helpers ----

    @classmethod
    def open_note(cls, issuer_index, operator_indexes):
        c, registry = cls.cast, cls.registry
        admin = c["admin"]
        note_id = registry.openNote(c["issuers"][issuer_index], {"from": admin}).events[
            "NoteOpened"
        ]["noteId"]
        stub = cls.stub_container.deploy({"from": admin})
        operators = [c["operators"][i] for i in operator_indexes]
        registry.bindNote(note_id, c["servicer"], [stub], operators, {"from": admin})
        return (note_id, issuer_index, stub)

    def _pick(self, items, index):
        return items[index % len(items)] if items else None

    # ---- rules ----

    @rule(
        op=st_index,
        note=st_index,
        mask=st_mask,
        chunk=st_chunk,
        flaw=st_flaw,
        model=st_index,
        go=st_flaw,
    )
    def register(self, op, note, mask, chunk, flaw, model, go):
        """Any operator registers any serials of the pool for a note's issuer,
        possibly with a flaw (a held or duplicate GPU must revert); mostly the
        attestor attests it and the operator tries to pledge it to that note
        (which must revert unless the note names the operator)."""
        c, registry = self.cast, self.registry
        operator = self._pick(c["operators"], op)
        target = self._pick(self.notes, note)
        issuer_account = c["issuers"][target[1]]
        serials = [s for bit, s in enumerate(SERIALS) if mask >> bit & 1]
        at = chain[-1].timestamp - 1 - DAY * (mask % 5) * 60
        leaves = [
            GpuLeaf(i, gpu_key("NVIDIA", s), MODELS[model % 2], SITE, DOCS, GPU_COST, at)
            for i, s in enumerate(serials)
        ]
        keys = [leaf.gpu_key for leaf in leaves]
        if flaw == 1:
            keys.append(keys[0])  # the same GPU twice
            leaves.append(replace(leaves[0], index=len(leaves)))
        elif flaw == 2:
            leaves[-1] = replace(leaves[-1], index=len(leaves) + 3)  # out of range
        elif flaw == 3:
            keys[-1] = gpu_key("NVIDIA", f"OTHER-{mask}")  # contradicts its leaf
        tree = MerkleTree(leaves)
        registration = (issuer_account, tree.root, len(keys), GPU_COST * len(keys))
        registration += (leaves[0].model, at, DOCS)
        tx = registry.registerBatch(registration, {"from": operator})
        batch_id = tx.events["BatchRegistered"]["batchId"]
        logged = []
        for _, part in key_chunks(keys, chunk):
            try:
                tx = registry.registerGpus(batch_id, part, {"from": operator})
            except brownie.exceptions.VirtualMachineError as exc:
                message = str(exc.revert_msg)
                assert message.startswith(("GpuHeld", "GpuDuplicate")), message
                if message.startswith("GpuHeld"):
                    held = gpu_key_of(message)
                    holder, blocking = registry.holderOf(held)
                    assert blocking and holder != batch_id
                else:
                    assert flaw == 1
                break
            logged += [bytes(k) for k in tx.events["GpusRegistered"]["keys"]]
        self.batches[batch_id] = Batch(
            batch_id, operator, issuer_account, leaves, tree, logged, flaw, chunk
        )
        if go and len(logged) == len(keys):
            registry.attestBatch(batch_id, DOCS, {"from": c["attestor"]})
            self.pledge(list(self.batches).index(batch_id), self.notes.index(target))

    @rule(pick=st_index, reject=st_flaw)
    def attest_or_reject(self, pick, reject):
        registry, attestor = self.registry, self.cast["attestor"]
        batch = self._pick(list(self.batches.values()), pick)
        if batch is None:
            return
        status = registry.batchInfo(batch.batch_id)["status"]
        if reject == 0 and status in (1, 2, 3):
            registry.rejectBatch(batch.batch_id, {"from": attestor})
        elif (
            status == 2
            and chain[-1].timestamp < registry.batchInfo(batch.batch_id)["openedAt"] + 3 * DAY
        ):
            registry.attestBatch(batch.batch_id, DOCS, {"from": attestor})

    @rule(pick=st_index, note=st_index)
    def pledge(self, pick, note):
        """The batch's operator pledges into any note, consented or not."""
        registry = self.registry
        batch = self._pick(list(self.batches.values()), pick)
        target = self._pick(self.notes, note)
        if batch is None or target is None:
            return
        try:
            registry.pledgeBatch(batch.batch_id, target[0], {"from": batch.operator})
        except brownie.exceptions.VirtualMachineError as exc:
            expected = (
                "BatchNotInStatus",
                "BatchExpired",
                "NoteNotOpen",
                "CallerNotNoteOperator",
                "BatchIssuerMismatch",
                "NoteBatchLimitReached",
            )
            assert str(exc.revert_msg).startswith(expected), exc.revert_msg

    @rule(pick=st_index)
    def prove(self, pick):
        """Anyone (the operator itself, often) proves a planted flaw."""
        registry = self.registry
        batch = self._pick(list(self.batches.values()), pick)
        if batch is None or batch.flaw not in (2, 3) or len(batch.keys) != len(batch.leaves):
            return
        i = len(batch.leaves) - 1
        leaf, proof = batch.leaves[i].as_tuple(), batch.tree.proof(i)
        try:
            if batch.flaw == 2:
                registry.proveBadLeaf(batch.batch_id, leaf, proof, {"from": batch.operator})
            else:
                first = i // batch.chunk * batch.chunk
                keys = batch.keys[first : first + batch.chunk]
                registry.proveKeyMismatch(
                    batch.batch_id, leaf, proof, first, keys, {"from": batch.operator}
                )
        except brownie.exceptions.VirtualMachineError as exc:
            expected = ("ChallengeWindowClosed", "BatchNotChallengeable", "ChunkKeysMismatch")
            assert str(exc.revert_msg).startswith(expected), exc.revert_msg

    @rule(note=st_index)
    def repay_and_release(self, note):
        target = self._pick(self.notes, note)
        if target is None:
            return
        note_id, _, stub = target
        if self.registry.noteInfo(note_id)["status"] not in LIVE:
            return
        stub.setState(REPAID, {"from": self.cast["admin"]})
        self.registry.releaseNote(note_id, {"from": self.cast["rando"]})

    @rule(note=st_index, release=st_flaw)
    def step_in(self, note, release):
        """The servicer moves the liens; the trustee releases them (a loss)
        now or later; nobody else can."""
        c, registry = self.cast, self.registry
        target = self._pick(self.notes, note)
        if target is None:
            return
        note_id = target[0]
        status = registry.noteInfo(note_id)["status"]
        if status == NOTE_OPEN:
            registry.transferLiens(note_id, c["trustee"], {"from": c["servicer"]})
        elif status == NOTE_STEPPED_IN:
            with brownie.reverts():
                registry.releaseNote(note_id, {"from": c["servicer"]})
            if release:
                registry.releaseNote(note_id, {"from": c["trustee"]})

    @rule(issuer=st_index, ops=st_mask)
    def open_note_rule(self, issuer, ops):
        if len(self.notes) >= 6:
            return
        operator_indexes = [i for i in range(3) if ops >> i & 1] or [0]
        self.notes.append(self.open_note(issuer % 2, operator_indexes))

    @rule(seconds=st_seconds)
    def advance_time(self, seconds):
        chain.sleep(seconds)
        chain.mine()
        self.time_passed = True

    # ---- invariants (chain state only) ----

    @invariant()
    def one_live_pledge_per_gpu(self):
        registry = self.registry
        ids = list(self.batches)
        if not ids:
            return
        lives = read_views(*((registry.livePledgeOf, b) for b in ids))
        infos = [registry.batchInfo(b) for b in ids]
        notes = {info["noteId"] for info in infos if info["noteId"]}
        status = {n: registry.noteInfo(n)["status"] for n in notes}
        holders = {}
        for batch_id, (live, _), info in zip(ids, lives, infos, strict=True):
            liened = info["status"] in (PLEDGED, VOIDED) and status.get(info["noteId"]) in LIVE
            for key in self.batches[batch_id].keys:
                if live:
                    holders.setdefault(key, []).append(batch_id)
                if liened:
                    # a GPU leaves its lien only when its note is released
                    assert tuple(registry.holderOf(key)) == (batch_id, True)
        for key, batch_ids in holders.items():
            assert len(batch_ids) == 1, (key.hex(), batch_ids)

    @invariant()
    def value_drops_only_for_a_reason(self):
        registry = self.registry
        for note_id, _, _ in self.notes:
            info = registry.noteInfo(note_id)
            value = registry.collateralValue(note_id)
            previous = self.values.get(note_id)
            if previous is not None and value < previous:
                reason = (
                    self.time_passed
                    or info["defects"] > self.defects[note_id]
                    or info["status"] != self.statuses[note_id]
                )
                assert reason, (note_id, previous, value)
            self.values[note_id] = value
            self.defects[note_id] = info["defects"]
            self.statuses[note_id] = info["status"]
        self.time_passed = False


def gpu_key_of(message):
    """The GPU key brownie prints first in `GpuHeld: b'...', holder`."""
    literal = message.split(": ", 1)[1].rsplit(", ", 1)[0]
    return ast.literal_eval(literal)


def test_registry_stateful(run_machine, registry, cast, TrancheStub):
    machine = RegistryMachine
    machine.registry, machine.cast, machine.stub_container = registry, cast, TrancheStub
    machine.initial_notes = (
        machine.open_note(0, [0, 1]),
        machine.open_note(1, [1, 2]),
    )
    chain.snapshot()
    run_machine(machine, examples=10, steps=20)
