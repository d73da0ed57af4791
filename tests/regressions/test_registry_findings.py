"""Issue 11: the seven findings of the outside review of the collateral
registry, each replayed as the attacker against the fixed registry.

Every test failed on main's registry (2bba4ca), in an old-API version of the
same attack: 1 note A's collateral dropped to 0; 2 the re-pledge succeeded;
3 `ProofsNotConflicting`; 4 `NoteBatchLimitReached: 1, 32`; 5 the voidable
batch counted at once; 6 class 0 worth 0 and class 2 worth 77.5 %; 7
`NoteNotRepaid: 1` for the trustee.
"""

from dataclasses import replace

import brownie
import pytest
from brownie import chain

from gpucredit.merkle import GpuLeaf, MerkleTree, chunk_hash, gpu_key, key_chunks, text_id

H100 = text_id("NVIDIA H100 SXM5 80GB")
H100_RENAMED = text_id("NVIDIA H100 SXM5 80GB (rev B)")
COST = 25_000 * 10**6
QUARTER = 7_889_400
DAY = 86_400
CHALLENGE_WINDOW = 3 * DAY
VALUATION_CHANGE_DELAY = 2 * DAY
PLEDGED, VOIDED = 4, 5
REPAID, CANCELLED = 3, 4


@pytest.fixture(autouse=True)
def isolation(fn_isolation):
    pass


@pytest.fixture(scope="module")
def parties(accounts):
    names = ("admin", "issuer", "operator", "attestor", "other_operator", "servicer", "trustee")
    return dict(zip(names, accounts[:7], strict=True)) | {"rando": accounts[9]}


@pytest.fixture(scope="module")
def reg(CollateralRegistry, parties):
    p = parties
    r = CollateralRegistry.deploy(p["admin"], {"from": p["admin"]})
    r.grantRole(r.ISSUER_ROLE(), p["issuer"], {"from": p["admin"]})
    r.grantRole(r.NOTE_FACTORY_ROLE(), p["admin"], {"from": p["admin"]})  # the NoteFactory
    for op in (p["operator"], p["other_operator"]):
        r.grantRole(r.OPERATOR_ROLE(), op, {"from": p["admin"]})
    r.grantRole(r.ATTESTOR_ROLE(), p["attestor"], {"from": p["admin"]})
    return r


@pytest.fixture
def open_note(reg, parties, TrancheStub):
    """Opens and binds a note of the issuer; returns (note id, its tranche stub)."""

    def _open(operators=None):
        p = parties
        note = reg.openNote(p["issuer"], {"from": p["admin"]}).events["NoteOpened"]["noteId"]
        stub = TrancheStub.deploy({"from": p["admin"]})
        ops = [p["operator"]] if operators is None else operators
        reg.bindNote(note, p["servicer"], [stub], ops, {"from": p["admin"]})
        return note, stub

    return _open


def leaves(serials, *, age=0, model=H100):
    at = chain[-1].timestamp - 1 - age
    return [
        GpuLeaf(i, gpu_key("NVIDIA", s), model, text_id("site"), text_id(s), COST, at)
        for i, s in enumerate(serials)
    ]


def register(reg, ls, op, issuer, *, model=None, keys=None, chunk=500):
    tree = MerkleTree(ls)
    registration = (
        issuer,
        tree.root,
        len(ls),
        COST * len(ls),
        model or ls[0].model,
        min(leaf.in_service_at for leaf in ls),
        text_id("docs"),
    )
    batch = reg.registerBatch(registration, {"from": op}).events["BatchRegistered"]["batchId"]
    for _, chunk_keys in key_chunks(keys or [leaf.gpu_key for leaf in ls], chunk):
        reg.registerGpus(batch, chunk_keys, {"from": op})
    return batch, tree


def attest(reg, batch, parties):
    reg.attestBatch(batch, text_id("attested"), {"from": parties["attestor"]})


def pledge(reg, ls, note, parties, *, op=None, wait=True):
    op = op or parties["operator"]
    batch, tree = register(reg, ls, op, parties["issuer"])
    attest(reg, batch, parties)
    reg.pledgeBatch(batch, note, {"from": op})
    if wait:
        chain.sleep(CHALLENGE_WINDOW + 1)
        chain.mine()
    return batch, tree


def test_1_a_parked_duplicate_cannot_make_note_a_the_victim(reg, parties, open_note, reverts_with):
    """The operator parks an attested batch holding GPU X, then tries to
    register its real fleet (also holding X) for note A: the second claim on
    X reverts naming X and the parked batch, before anything is pledged; in
    the other order, the parked batch is the one refused. Note A's batch is
    never voided by someone else's duplicate."""
    p = parties
    note_a, _ = open_note()
    parked_leaves = leaves(["X"])
    parked, _ = register(reg, parked_leaves, p["operator"], p["issuer"])
    attest(reg, parked, p)
    fleet = leaves([f"F{i}" for i in range(99)] + ["X"])
    with reverts_with("GpuHeld", gpu_key("NVIDIA", "X"), parked):
        register(reg, fleet, p["operator"], p["issuer"])

    # the other order: the fleet first, pledged to A; the parked copy is refused
    chain.sleep(14 * DAY + 1)  # the parked batch's pledge window lapses unused
    chain.mine()
    batch_a, _ = pledge(reg, fleet, note_a, p)
    value_a = reg.collateralValue(note_a)
    assert value_a == 100 * COST
    with reverts_with("GpuHeld", gpu_key("NVIDIA", "X"), batch_a):
        register(reg, leaves(["X"]), p["other_operator"], p["issuer"])
    assert reg.collateralValue(note_a) == value_a
    assert reg.holderOf(gpu_key("NVIDIA", "X")) == (batch_a, True)


def test_2_proving_your_own_fraud_does_not_free_the_gpus(reg, parties, open_note, reverts_with):
    """The operator plants a bad leaf in a batch pledged to note A, lets A
    draw down, proves its own fraud, and tries to re-pledge the same GPUs to
    note C: the voided batch keeps its lien until A is released, and A
    counts the defect."""
    p = parties
    note_a, stub_a = open_note()
    note_c, _ = open_note()
    good = leaves([f"Y{i}" for i in range(5)])
    planted = replace(good[4], index=9)  # index out of range: provable
    tree_leaves = [*good[:4], planted]
    batch, tree = register(
        reg, tree_leaves, p["operator"], p["issuer"], keys=[leaf.gpu_key for leaf in good]
    )
    attest(reg, batch, p)
    reg.pledgeBatch(batch, note_a, {"from": p["operator"]})
    tx = reg.proveBadLeaf(batch, planted.as_tuple(), tree.proof(4), {"from": p["operator"]})
    assert tx.events["NoteDefectProven"]["defects"] == 1
    assert reg.batchInfo(batch)["status"] == VOIDED
    for leaf in good:
        assert reg.holderOf(leaf.gpu_key) == (batch, True)
    with reverts_with("GpuHeld", good[0].gpu_key, batch):
        pledge(reg, good, note_c, p)
    # released with A (repaid), the GPUs are free again
    stub_a.setState(REPAID, {"from": p["admin"]})
    reg.releaseNote(note_a, {"from": p["rando"]})
    pledge(reg, good, note_c, p)
    assert reg.collateralValue(note_c) == 5 * COST


def test_3_one_gpu_cannot_be_counted_twice_in_a_batch(reg, parties, reverts_with):
    """A batch whose key list holds the same GPU twice (the exact duplicate
    leaf of the review) is impossible by construction: registration reverts,
    in the same chunk or across chunks."""
    p = parties
    ls = leaves(["X", "Y"])
    dup = [ls[0], ls[1], replace(ls[0], index=2)]
    with reverts_with("GpuDuplicate", ls[0].gpu_key, 1):
        register(reg, dup, p["operator"], p["issuer"])
    with reverts_with("GpuDuplicate", ls[0].gpu_key, 2):
        register(reg, dup, p["operator"], p["issuer"], chunk=2)


def test_4_no_pledge_without_consent_and_dead_batches_free_their_slot(
    reg, parties, open_note, reverts_with
):
    """Another operator of the same issuer cannot pledge into a note that
    does not name it; and the note's own operator, having filled the 32 slots
    and voided some, gets the slots back."""
    p = parties
    note, _ = open_note()
    stranger, _ = register(reg, leaves(["S0"]), p["other_operator"], p["issuer"])
    attest(reg, stranger, p)
    with reverts_with("CallerNotNoteOperator", note, p["other_operator"].address):
        reg.pledgeBatch(stranger, note, {"from": p["other_operator"]})

    batches = []
    for i in range(32):
        ls = [leaves([f"T{i}"])[0], replace(leaves([f"T{i}b"])[0], index=7)]
        keys = [leaf.gpu_key for leaf in ls]
        batch, tree = register(reg, ls, p["operator"], p["issuer"], keys=keys)
        attest(reg, batch, p)
        reg.pledgeBatch(batch, note, {"from": p["operator"]})
        batches.append((batch, tree, ls))
    last, _ = register(reg, leaves(["REAL"]), p["operator"], p["issuer"])
    attest(reg, last, p)
    with reverts_with("NoteBatchLimitReached", note, 32):
        reg.pledgeBatch(last, note, {"from": p["operator"]})
    batch, tree, ls = batches[0]
    reg.proveBadLeaf(batch, ls[1].as_tuple(), tree.proof(1), {"from": p["rando"]})
    reg.pledgeBatch(last, note, {"from": p["operator"]})
    assert len(reg.noteInfo(note)["batchIds"]) == 32


def test_5_collateral_that_can_still_be_voided_does_not_count(
    reg, parties, open_note, reverts_with
):
    """A batch counts only once its challenge window has passed, so a batch
    its operator will void never cures anything; its voiding is a defect on
    the note; after the window nothing can void it."""
    p = parties
    note, _ = open_note()
    honest, _ = pledge(reg, leaves(["H0", "H1"]), note, p)
    value = reg.collateralValue(note)
    assert value == 2 * COST

    ls = leaves(["V0", "V1"])
    bad = replace(ls[1], index=5)
    keys = [leaf.gpu_key for leaf in ls]
    batch, tree = register(reg, [ls[0], bad], p["operator"], p["issuer"], keys=keys)
    attest(reg, batch, p)
    tx = reg.pledgeBatch(batch, note, {"from": p["operator"]})
    assert tx.events["BatchPledged"]["collateralValue"] == value  # pledged, not counted
    assert reg.collateralValue(note) == value
    tx = reg.proveBadLeaf(batch, bad.as_tuple(), tree.proof(1), {"from": p["operator"]})
    assert dict(tx.events["NoteDefectProven"]) == {"noteId": note, "batchId": batch, "defects": 1}
    assert reg.collateralValue(note) == value

    # an honest batch counts once its window has passed, and is final then
    ok = leaves(["W0", "W1"])
    later, tree = pledge(reg, ok, note, p, wait=False)
    assert reg.collateralValue(note) == value
    chain.sleep(CHALLENGE_WINDOW + 1)
    chain.mine()
    assert reg.collateralValue(note) == value + 2 * COST
    wrong = replace(ok[1], index=4)
    closed_at = reg.batchInfo(later)["attestedAt"] + CHALLENGE_WINDOW
    with reverts_with("ChallengeWindowClosed", later, closed_at):
        reg.proveBadLeaf(later, wrong.as_tuple(), tree.proof(1), {"from": p["rando"]})
    assert reg.livePledgeOf(honest) == (True, note)


def test_6_the_valuer_not_the_operator_picks_class_and_model(reg, parties, open_note, reverts_with):
    """Registration names a registered model and inherits its class; a
    renamed model id is unknown; a new model (or a class that never
    depreciates, put to use) waits the two-day timelock."""
    p = parties
    age = 6 * QUARTER
    note, _ = open_note()
    batch, _ = pledge(reg, leaves(["C0"], age=age), note, p)
    # H100 is class 1 (5 %/quarter): 6 quarters -> 70 %, whatever the operator wants
    assert reg.batchValue(batch) == COST * 7_000 // 10_000
    with reverts_with("ModelUnknown", H100_RENAMED):
        register(reg, leaves(["R0"], age=age, model=H100_RENAMED), p["operator"], p["issuer"])

    # the valuer adds a never-depreciating class and a renamed model in it
    reg.setDepreciationClass(9, 0, 10_000, {"from": p["admin"]})  # inert: no model uses it
    tx = reg.setModel(H100_RENAMED, 9, 0, {"from": p["admin"]})
    assert "ModelQueued" in tx.events and "ModelSet" not in tx.events
    with reverts_with("ModelUnknown", H100_RENAMED):
        register(reg, leaves(["R0"], age=age, model=H100_RENAMED), p["operator"], p["issuer"])
    # moving H100 itself into class 9 also waits; a haircut raise is at once
    tx = reg.setModel(H100, 9, 0, {"from": p["admin"]})
    assert "ModelQueued" in tx.events
    assert reg.modelInfo(H100)["classId"] == 1
    tx = reg.setModel(H100, 1, 3_000, {"from": p["admin"]})
    assert "ModelSet" in tx.events and "ModelCancelled" in tx.events
    assert reg.batchValue(batch) == COST * 7_000 * 7_000 // 10_000**2
    chain.sleep(VALUATION_CHANGE_DELAY)
    chain.mine()
    reg.executeModel(H100_RENAMED, {"from": p["admin"]})
    register(reg, leaves(["R0"], age=age, model=H100_RENAMED), p["operator"], p["issuer"])


def test_7_the_trustee_releases_the_liens_after_a_loss(reg, parties, open_note, reverts_with):
    """After a default with a loss the tranche never reaches Repaid: the
    trustee, lienholder since the step-in, releases the liens, and only it."""
    p = parties
    note, stub = open_note()
    ls = leaves(["L0", "L1"])
    pledge(reg, ls, note, p)
    stub.setState(2, {"from": p["admin"]})  # Active: drawn, never repaid
    reg.transferLiens(note, p["trustee"], {"from": p["servicer"]})
    for who in (p["servicer"], p["issuer"], p["rando"]):
        with reverts_with("NoteNotRepaid", note):
            reg.releaseNote(note, {"from": who})
    reg.releaseNote(note, {"from": p["trustee"]})
    assert reg.noteInfo(note)["status"] == 2  # Released
    for leaf in ls:
        assert reg.holderOf(leaf.gpu_key)[1] is False  # free and clear
    # the GPUs are sold free and clear: the buyer's batch registers them
    note_2, _ = open_note()
    pledge(reg, ls, note_2, p)


def test_key_mismatch_is_provable_with_one_proof(reg, parties, open_note):
    """A leaf contradicting the key registered at its index is voided with
    its Merkle proof and the keys of that one chunk."""
    p = parties
    note, _ = open_note()
    ls = leaves([f"K{i}" for i in range(6)])
    keys = [leaf.gpu_key for leaf in ls]
    keys[4] = gpu_key("NVIDIA", "SOMETHING-ELSE")
    batch, tree = register(reg, ls, p["operator"], p["issuer"], keys=keys, chunk=3)
    attest(reg, batch, p)
    reg.pledgeBatch(batch, note, {"from": p["operator"]})
    assert bytes(reg.chunkHash(batch, 3)) == chunk_hash(3, keys[3:])
    with brownie.reverts():
        reg.proveKeyMismatch(batch, ls[3].as_tuple(), tree.proof(3), 3, keys[3:])  # consistent
    tx = reg.proveKeyMismatch(batch, ls[4].as_tuple(), tree.proof(4), 3, keys[3:])
    assert tx.events["BatchVoided"]["reason"] == "key mismatch"
    assert reg.noteInfo(note)["defects"] == 1
