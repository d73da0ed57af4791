"""CollateralRegistry: batches of GPUs as Merkle roots, pledges, fraud proofs, valuation."""

from dataclasses import replace

import brownie
import pytest
from eth_utils import keccak

from gpucredit.merkle import (
    GpuLeaf,
    MerkleTree,
    chunk_hash,
    gpu_key,
    key_chunks,
    leaf_hash,
    text_id,
    verify_proof,
)

QUARTER = 7_889_400
HOUR = 3600
VALUATION_CHANGE_DELAY = 2 * 86_400  # value-raising valuation changes wait this long
BPS = 10_000

H100 = text_id("NVIDIA H100 SXM5 80GB")
B200 = text_id("NVIDIA B200 SXM 180GB")  # a default model: class 0
SITE = text_id("ams-1")
OPERATOR_DOCS = text_id("operator attestation documents")
ATTESTOR_DOCS = text_id("attestor report 2025-Q3")
GPU_COST = 25_000_000_000  # 25,000 USD with 6 decimals

# enum values
NOTE_OPEN, NOTE_RELEASED, NOTE_STEPPED_IN = 1, 2, 3
REGISTERING, REGISTERED, ATTESTED, PLEDGED, VOIDED, REJECTED = 1, 2, 3, 4, 5, 6
DAY = 86_400
REGISTRATION_WINDOW = 3 * DAY
PLEDGE_WINDOW = 14 * DAY
CHALLENGE_WINDOW = 3 * DAY
A100 = text_id("NVIDIA A100 80GB")


# ---- fixtures ----


@pytest.fixture(scope="module")
def registry(collateral_registry):
    return collateral_registry


@pytest.fixture(scope="module")
def other_issuer(accounts, registry, admin):
    """A second SPV issuer, financed by another operator."""
    registry.grantRole(registry.ISSUER_ROLE(), accounts[4], {"from": admin})
    return accounts[4]


@pytest.fixture(scope="module")
def other_operator(accounts, registry, admin):
    registry.grantRole(registry.OPERATOR_ROLE(), accounts[5], {"from": admin})
    return accounts[5]


@pytest.fixture(scope="module")
def manager(accounts):
    """Servicer of the notes: the lienholders' agent, may transfer their liens."""
    return accounts[6]


@pytest.fixture(scope="module")
def factory(accounts, registry, admin):
    """Stands in for the NoteFactory: holds NOTE_FACTORY_ROLE."""
    registry.grantRole(registry.NOTE_FACTORY_ROLE(), accounts[8], {"from": admin})
    return accounts[8]


@pytest.fixture(scope="module")
def tranche_stub(TrancheStub, admin):
    """The tranche every note of these tests is bound to (state settable)."""
    return TrancheStub.deploy({"from": admin})


@pytest.fixture(scope="module")
def trustee(accounts):
    return accounts[7]


@pytest.fixture
def now(chain):
    return chain[-1].timestamp


@pytest.fixture
def opener(registry, factory, manager, tranche_stub, operator, other_operator):
    """`opener(issuer, operators=..., tranches=...)`: opens and binds a note
    through the factory account; serviced by `manager`, by default bound to
    `tranche_stub` with `operator` and `other_operator` as its operators."""

    def open_(issuer, *, operators=None, tranches=None, servicer=None):
        operators = [operator, other_operator] if operators is None else operators
        tranches = [tranche_stub] if tranches is None else tranches
        note_id = open_note(registry, factory, issuer)
        registry.bindNote(note_id, servicer or manager, tranches, operators, {"from": factory})
        return note_id

    return open_


@pytest.fixture
def note(opener, issuer):
    """A bound, open note of `issuer`, serviced by `manager`."""
    return opener(issuer)


@pytest.fixture
def other_note(opener, other_issuer):
    return opener(other_issuer)


@pytest.fixture
def pledged(registry, operator, attestor, issuer, note, now):
    """Batch of three B200s (class 0) pledged to `note`, in service two
    quarters and an hour ago, its challenge window passed: it counts."""
    leaves = make_leaves(["SN-A", "SN-B", "SN-C"], in_service_at=now - 2 * QUARTER - HOUR)
    batch_id, tree = register_attest_pledge(registry, operator, attestor, issuer, note, leaves)
    wait(CHALLENGE_WINDOW + 1)
    return batch_id, tree, leaves


@pytest.fixture
def stubs(TrancheStub, admin):
    """Two tranche test doubles (senior, junior)."""
    return [TrancheStub.deploy({"from": admin}) for _ in range(2)]


# ---- helpers ----


def make_leaves(
    serials,
    *,
    in_service_at,
    model=B200,
    cost=GPU_COST,
    vendor="NVIDIA",
    first_index=0,
):
    return [
        GpuLeaf(
            index=first_index + i,
            gpu_key=gpu_key(vendor, serial),
            model=model,
            site_id=SITE,
            attestation_hash=keccak(text=serial),
            cost=cost,
            in_service_at=in_service_at,
        )
        for i, serial in enumerate(serials)
    ]


def registration(issuer, leaves, **overrides):
    """The BatchRegistration tuple a truthful operator sends for `leaves`."""
    tree = MerkleTree(leaves)
    fields = {
        "issuer": issuer.address if hasattr(issuer, "address") else issuer,
        "root": tree.root,
        "count": len(leaves),
        "totalCost": sum(leaf.cost for leaf in leaves),
        "model": leaves[0].model,
        "inServiceAt": min(leaf.in_service_at for leaf in leaves),
        "attestationHash": OPERATOR_DOCS,
    }
    fields.update(overrides)
    order = ["issuer", "root", "count", "totalCost", "model", "inServiceAt", "attestationHash"]
    return tuple(fields[key] for key in order), tree


def register(registry, operator, issuer, leaves, *, keys=None, chunk=500, **overrides):
    """Registers the header, then the keys (by default the leaves' own) in chunks."""
    reg, tree = registration(issuer, leaves, **overrides)
    tx = registry.registerBatch(reg, {"from": operator})
    batch_id = tx.events["BatchRegistered"]["batchId"]
    keys = [leaf.gpu_key for leaf in leaves] if keys is None else keys
    for _, part in key_chunks(keys, chunk):
        registry.registerGpus(batch_id, part, {"from": operator})
    return batch_id, tree


def register_attest_pledge(registry, operator, attestor, issuer, note_id, leaves, **overrides):
    batch_id, tree = register(registry, operator, issuer, leaves, **overrides)
    registry.attestBatch(batch_id, ATTESTOR_DOCS, {"from": attestor})
    registry.pledgeBatch(batch_id, note_id, {"from": operator})
    return batch_id, tree


def wait(seconds):
    brownie.chain.sleep(seconds)
    brownie.chain.mine()


def open_note(registry, factory, issuer):
    return registry.openNote(issuer, {"from": factory}).events["NoteOpened"]["noteId"]


def settle(tranche_stub, admin):
    """Every note bound to `tranche_stub` becomes releasable by anyone."""
    tranche_stub.setRepaid(True, {"from": admin})


def fields(tx, name, i=0):
    """Event `name` (the i-th one) as a dict of plain Python values."""
    event = tx.events[name][i]
    return {key: plain_value(value) for key, value in event.items()}


def plain_value(value):
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, bytes):
        return bytes(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, tuple | list):
        return tuple(plain_value(item) for item in value)
    return value


def unauthorized(typed_error, account, role):
    return typed_error("AccessControlUnauthorizedAccount", account, role)


def value_of(cost, factor_bps, haircut_bps=0):
    """The registry's valuation, rounded down."""
    return cost * factor_bps * (BPS - haircut_bps) // BPS**2


# ---- deployment and roles ----


def test_roles_and_constants(registry, admin, issuer, operator, attestor, rando):
    roles = ("ISSUER_ROLE", "NOTE_FACTORY_ROLE", "OPERATOR_ROLE", "ATTESTOR_ROLE", "VALUATION_ROLE")
    for name in roles:
        assert bytes(getattr(registry, name)()) == keccak(text=name)
    assert registry.MAX_KEYS_PER_CHUNK() == 700
    assert registry.REGISTRATION_WINDOW() == REGISTRATION_WINDOW
    assert registry.PLEDGE_WINDOW() == PLEDGE_WINDOW
    assert registry.CHALLENGE_WINDOW() == CHALLENGE_WINDOW
    assert registry.QUARTER() == QUARTER == (36525 * 24 * 3600) // 400
    assert registry.MAX_BATCHES_PER_NOTE() == 32
    assert registry.MAX_TRANCHES_PER_NOTE() == 4
    assert registry.hasRole(registry.DEFAULT_ADMIN_ROLE(), admin)
    assert registry.hasRole(registry.VALUATION_ROLE(), admin)
    assert not registry.hasRole(registry.ISSUER_ROLE(), admin)
    assert registry.hasRole(registry.ISSUER_ROLE(), issuer)
    assert registry.hasRole(registry.OPERATOR_ROLE(), operator)
    assert registry.hasRole(registry.ATTESTOR_ROLE(), attestor)
    assert not registry.hasRole(registry.VALUATION_ROLE(), rando)


def test_default_depreciation_classes(CollateralRegistry, admin, plain):
    registry = CollateralRegistry.deploy(admin, {"from": admin})
    events = [plain_value(tuple(e.values())) for e in registry.tx.events["DepreciationClassSet"]]
    assert events == [(0, 1667, 0), (1, 500, 0), (2, 375, 0)]
    assert plain(registry.depreciationClass(0)) == (1667, 0, True)
    assert plain(registry.depreciationClass(1)) == (500, 0, True)
    assert plain(registry.depreciationClass(2)) == (375, 0, True)
    assert plain(registry.depreciationClass(3)) == (0, 0, False)
    models = [plain_value(tuple(e.values())) for e in registry.tx.events["ModelSet"]]
    assert models == [(B200, 0, 0), (H100, 1, 0), (text_id("NVIDIA H200 SXM 141GB"), 1, 0)] + [
        (A100, 2, 0)
    ]


def test_constructor_rejects_zero_admin(CollateralRegistry, admin, typed_error):
    with brownie.reverts(typed_error("ZeroAddress")):
        CollateralRegistry.deploy(brownie.ZERO_ADDRESS, {"from": admin})


def test_rando_cannot_grant_roles(registry, rando, typed_error):
    with brownie.reverts(unauthorized(typed_error, rando, registry.DEFAULT_ADMIN_ROLE())):
        registry.grantRole(registry.ISSUER_ROLE(), rando, {"from": rando})


# ---- openNote / bindNote ----


def test_open_note(registry, factory, issuer, other_issuer, plain):
    tx = registry.openNote(issuer, {"from": factory})
    assert fields(tx, "NoteOpened") == {
        "noteId": 1,
        "issuer": issuer.address,
        "factory": factory.address,
    }
    assert tx.return_value in (1, None)  # None when the node cannot trace
    assert plain(registry.noteInfo(1)) == (
        issuer.address,
        brownie.ZERO_ADDRESS,
        NOTE_OPEN,
        brownie.ZERO_ADDRESS,
        0,
        (),
    )
    assert registry.openNote(other_issuer, {"from": factory}).events["NoteOpened"]["noteId"] == 2
    assert registry.noteInfo(2)[0] == other_issuer
    assert registry.noteTranches(2) == []
    assert registry.noteOperators(2) == []
    assert registry.collateralValue(2) == 0


def test_open_note_needs_an_issuer(registry, factory, rando, typed_error):
    with brownie.reverts(typed_error("IssuerRoleMissing", rando)):
        registry.openNote(rando, {"from": factory})


def test_open_and_bind_are_factory_only(
    registry, factory, issuer, rando, manager, operator, tranche_stub, typed_error
):
    # an issuer cannot open its own note, nor bind one: only the factory
    for account in (rando, issuer, operator):
        with brownie.reverts(unauthorized(typed_error, account, registry.NOTE_FACTORY_ROLE())):
            registry.openNote(issuer, {"from": account})
    note_id = open_note(registry, factory, issuer)
    for account in (rando, issuer, manager):
        with brownie.reverts(unauthorized(typed_error, account, registry.NOTE_FACTORY_ROLE())):
            registry.bindNote(note_id, manager, [tranche_stub], [operator], {"from": account})


def test_bind_note(registry, factory, issuer, manager, operator, other_operator, stubs, plain):
    note_id = open_note(registry, factory, issuer)
    tx = registry.bindNote(note_id, manager, stubs, [operator, other_operator], {"from": factory})
    assert fields(tx, "NoteBound") == {
        "noteId": note_id,
        "servicer": manager.address,
        "tranches": tuple(stub.address for stub in stubs),
        "operators": (operator.address, other_operator.address),
    }
    assert plain(registry.noteInfo(note_id))[:5] == (
        issuer.address,
        manager.address,
        NOTE_OPEN,
        brownie.ZERO_ADDRESS,
        0,
    )
    assert registry.noteTranches(note_id) == [stub.address for stub in stubs]
    assert registry.noteOperators(note_id) == [operator, other_operator]


def test_bind_note_errors(
    registry, factory, issuer, manager, operator, stubs, TrancheStub, admin, typed_error
):
    note_id = open_note(registry, factory, issuer)
    zero = brownie.ZERO_ADDRESS
    with brownie.reverts(typed_error("NoteUnknown", 9)):
        registry.bindNote(9, manager, stubs, [operator], {"from": factory})
    with brownie.reverts(typed_error("ZeroAddress")):
        registry.bindNote(note_id, zero, stubs, [operator], {"from": factory})
    with brownie.reverts(typed_error("NoteTranchesCount", note_id, 0, 4)):
        registry.bindNote(note_id, manager, [], [operator], {"from": factory})
    with brownie.reverts(typed_error("NoteTranchesCount", note_id, 5, 4)):
        registry.bindNote(note_id, manager, [stubs[0]] * 5, [operator], {"from": factory})
    with brownie.reverts(typed_error("ZeroAddress")):
        registry.bindNote(note_id, manager, [stubs[0], zero], [operator], {"from": factory})
    with brownie.reverts(typed_error("NoteOperatorsEmpty", note_id)):
        registry.bindNote(note_id, manager, stubs, [], {"from": factory})
    with brownie.reverts(typed_error("ZeroAddress")):
        registry.bindNote(note_id, manager, stubs, [operator, zero], {"from": factory})
    registry.bindNote(note_id, manager, stubs, [operator], {"from": factory})
    # once bound, nothing about the note can change
    with brownie.reverts(typed_error("NoteAlreadyBound", note_id)):
        registry.bindNote(note_id, manager, stubs, [operator], {"from": factory})
    for name in ("setNoteManager", "setNoteTranches"):
        assert not hasattr(registry, name)


def test_note_views_reject_unknown_note(registry, typed_error):
    for view in (
        registry.noteInfo,
        registry.noteTranches,
        registry.noteOperators,
        registry.collateralValue,
        registry.outstandingPrincipal,
    ):
        with brownie.reverts(typed_error("NoteUnknown", 1)):
            view(1)


def test_outstanding_principal_sums_the_fixed_tranches(
    registry, opener, issuer, stubs, TrancheStub, admin
):
    stubs[0].setPrincipalOutstanding(7_000_000_000_000, {"from": admin})
    stubs[1].setPrincipalOutstanding(3_000_000_000_001, {"from": admin})
    extra = [TrancheStub.deploy({"from": admin}) for _ in range(2)]
    extra[0].setPrincipalOutstanding(5, {"from": admin})
    note_id = opener(issuer, tranches=[stubs[1], *extra, stubs[0]])
    assert registry.outstandingPrincipal(note_id) == 10_000_000_000_006
    stubs[0].setPrincipalOutstanding(0, {"from": admin})
    assert registry.outstandingPrincipal(note_id) == 3_000_000_000_006


# ---- registerBatch / registerGpus ----


def test_register_batch(registry, operator, issuer, now, plain):
    leaves = make_leaves(["SN-1", "SN-2"], in_service_at=now - HOUR, model=H100)
    reg, tree = registration(issuer, leaves)
    tx = registry.registerBatch(reg, {"from": operator})
    opened = tx.timestamp
    assert fields(tx, "BatchRegistered") == {
        "batchId": 1,
        "operator": operator.address,
        "issuer": issuer.address,
        "root": tree.root,
        "count": 2,
        "totalCost": 2 * GPU_COST,
        "model": H100,
        "inServiceAt": now - HOUR,
        "attestationHash": OPERATOR_DOCS,
    }
    header = (tree.root, operator.address, 2, 0, REGISTERING, issuer.address, 0, 2 * GPU_COST)
    header += (now - HOUR, opened, 0, H100, OPERATOR_DOCS)
    assert plain(registry.batchInfo(1)) == header
    keys = [leaf.gpu_key for leaf in leaves]
    tx = registry.registerGpus(1, keys, {"from": operator})
    assert fields(tx, "GpusRegistered") == {
        "batchId": 1,
        "firstIndex": 0,
        "chunkHash": chunk_hash(0, keys),
        "keys": tuple(keys),
    }
    info = registry.batchInfo(1)
    assert (info["keysRegistered"], info["status"]) == (2, REGISTERED)
    assert bytes(registry.chunkHash(1, 0)) == chunk_hash(0, keys)
    for key in keys:
        assert plain(registry.holderOf(key)) == (1, True)
    assert plain(registry.livePledgeOf(1)) == (False, 0)
    assert registry.batchValue(1) == 2 * GPU_COST  # less than a quarter in service
    second, _ = register(registry, operator, issuer, make_leaves(["SN-3"], in_service_at=now))
    assert second == 2


def test_register_in_chunks_is_resumable(registry, operator, issuer, now, typed_error, plain):
    leaves = make_leaves([f"SN-{i}" for i in range(7)], in_service_at=now)
    reg, _ = registration(issuer, leaves)
    batch = registry.registerBatch(reg, {"from": operator}).events["BatchRegistered"]["batchId"]
    keys = [leaf.gpu_key for leaf in leaves]
    registry.registerGpus(batch, keys[:3], {"from": operator})
    # a chunk must continue where the last one stopped, and not overflow the count
    with brownie.reverts(typed_error("ChunkInvalid", batch, 3, 5)):
        registry.registerGpus(batch, keys[2:], {"from": operator})
    with brownie.reverts(typed_error("ChunkInvalid", batch, 3, 0)):
        registry.registerGpus(batch, [], {"from": operator})
    with brownie.reverts(typed_error("GpuDuplicate", keys[2], batch)):
        registry.registerGpus(batch, keys[2:6], {"from": operator})
    info = registry.batchInfo(batch)
    assert (info["keysRegistered"], info["status"]) == (3, REGISTERING)
    registry.registerGpus(batch, keys[3:], {"from": operator})  # resumed
    assert registry.batchInfo(batch)["status"] == REGISTERED
    with brownie.reverts(typed_error("BatchNotInStatus", batch, REGISTERED, REGISTERING)):
        registry.registerGpus(batch, [b"\x01" * 32], {"from": operator})
    assert bytes(registry.chunkHash(batch, 3)) == chunk_hash(3, keys[3:])


def test_register_batch_errors(registry, operator, other_operator, issuer, now, typed_error):
    leaves = make_leaves(["SN-1"], in_service_at=now - HOUR)
    reg, _ = registration(issuer, leaves, count=0)
    with brownie.reverts(typed_error("BatchEmpty")):
        registry.registerBatch(reg, {"from": operator})
    unknown = text_id("NVIDIA H100 SXM5 80GB (renamed)")
    reg, _ = registration(issuer, leaves, model=unknown)
    with brownie.reverts(typed_error("ModelUnknown", unknown)):
        registry.registerBatch(reg, {"from": operator})
    future = now + 1000
    reg, _ = registration(issuer, leaves, inServiceAt=future)
    with brownie.reverts(typed_error("BatchInServiceInFuture", future)):
        registry.registerBatch(reg, {"from": operator})
    reg, _ = registration(brownie.ZERO_ADDRESS, leaves)
    with brownie.reverts(typed_error("ZeroAddress")):
        registry.registerBatch(reg, {"from": operator})
    reg, _ = registration(issuer, leaves)
    batch = registry.registerBatch(reg, {"from": operator}).events["BatchRegistered"]["batchId"]
    with brownie.reverts(typed_error("CallerNotBatchOperator", batch, other_operator)):
        registry.registerGpus(batch, [leaves[0].gpu_key], {"from": other_operator})
    too_many = [keccak(i.to_bytes(32, "big")) for i in range(701)]
    with brownie.reverts(typed_error("ChunkInvalid", batch, 0, 701)):
        registry.registerGpus(batch, too_many, {"from": operator})
    wait(REGISTRATION_WINDOW)
    deadline = registry.batchInfo(batch)["openedAt"] + REGISTRATION_WINDOW
    with brownie.reverts(typed_error("BatchExpired", batch, deadline)):
        registry.registerGpus(batch, [leaves[0].gpu_key], {"from": operator})


def test_register_batch_is_operator_only(registry, issuer, attestor, rando, now, typed_error):
    reg, _ = registration(issuer, make_leaves(["SN-1"], in_service_at=now - HOUR))
    for account in (rando, attestor, issuer):
        with brownie.reverts(unauthorized(typed_error, account, registry.OPERATOR_ROLE())):
            registry.registerBatch(reg, {"from": account})


def test_batch_views_reject_unknown_batch(registry, typed_error, now):
    leaf = make_leaves(["SN-1"], in_service_at=now)[0]
    with brownie.reverts(typed_error("BatchUnknown", 1)):
        registry.batchInfo(1)
    with brownie.reverts(typed_error("BatchUnknown", 1)):
        registry.batchValue(1)
    with brownie.reverts(typed_error("BatchUnknown", 1)):
        registry.livePledgeOf(1)
    with brownie.reverts(typed_error("BatchUnknown", 1)):
        registry.verifyGpu(1, leaf.as_tuple(), [])
    assert plain_value(tuple(registry.holderOf(leaf.gpu_key))) == (0, False)


# ---- uniqueness and squatting ----


def test_a_held_gpu_cannot_enter_another_batch(
    registry, operator, other_operator, attestor, issuer, other_issuer, pledged, now, typed_error
):
    batch_id, _, leaves = pledged
    rogue = make_leaves(["NEW-1", "SN-B"], in_service_at=now)
    with brownie.reverts(typed_error("GpuHeld", leaves[1].gpu_key, batch_id)):
        register(registry, other_operator, other_issuer, rogue)  # any issuer, any operator


def test_a_squatter_blocks_no_one_for_long(
    registry, operator, other_operator, attestor, issuer, other_issuer, opener, now, typed_error
):
    """A squatter registers the real owner's serials first. Unattested, its
    claim lapses after the registration window, or at once when the attestor
    rejects it; it can never attest or pledge them afterwards."""
    owner_fleet = make_leaves(["REAL-1", "REAL-2"], in_service_at=now)
    squat, _ = register(registry, other_operator, other_issuer, owner_fleet)
    with brownie.reverts(typed_error("GpuHeld", owner_fleet[0].gpu_key, squat)):
        register(registry, operator, issuer, owner_fleet)
    tx = registry.rejectBatch(squat, {"from": attestor})
    assert fields(tx, "BatchRejected") == {"batchId": squat, "attestor": attestor.address}
    assert registry.holderOf(owner_fleet[0].gpu_key) == (squat, False)
    owner, _ = register(registry, operator, issuer, owner_fleet)
    registry.attestBatch(owner, ATTESTOR_DOCS, {"from": attestor})
    note_id = opener(issuer)
    registry.pledgeBatch(owner, note_id, {"from": operator})
    with brownie.reverts(typed_error("BatchNotInStatus", squat, REJECTED, REGISTERED)):
        registry.attestBatch(squat, ATTESTOR_DOCS, {"from": attestor})

    # without a rejection the claim lapses on its own
    other = make_leaves(["REAL-3"], in_service_at=now)
    squat_2, _ = register(registry, other_operator, other_issuer, other)
    wait(REGISTRATION_WINDOW)
    deadline = registry.batchInfo(squat_2)["openedAt"] + REGISTRATION_WINDOW
    assert registry.holderOf(other[0].gpu_key) == (squat_2, False)
    with brownie.reverts(typed_error("BatchExpired", squat_2, deadline)):
        registry.attestBatch(squat_2, ATTESTOR_DOCS, {"from": attestor})
    owner_2, _ = register(registry, operator, issuer, other)
    assert registry.holderOf(other[0].gpu_key) == (owner_2, True)


def test_reject_batch(registry, operator, attestor, issuer, note, pledged, now, typed_error):
    batch_id, _, _ = pledged
    with brownie.reverts(typed_error("BatchNotInStatus", batch_id, PLEDGED, ATTESTED)):
        registry.rejectBatch(batch_id, {"from": attestor})
    with brownie.reverts(unauthorized(typed_error, operator, registry.ATTESTOR_ROLE())):
        registry.rejectBatch(batch_id, {"from": operator})
    other, _ = register(registry, operator, issuer, make_leaves(["R-1"], in_service_at=now))
    registry.attestBatch(other, ATTESTOR_DOCS, {"from": attestor})
    registry.rejectBatch(other, {"from": attestor})
    assert registry.batchValue(other) == 0
    with brownie.reverts(typed_error("BatchNotInStatus", other, REJECTED, ATTESTED)):
        registry.pledgeBatch(other, note, {"from": operator})


# ---- attestBatch ----


def test_attest_batch(registry, operator, attestor, issuer, now):
    batch_id, _ = register(registry, operator, issuer, make_leaves(["SN-1"], in_service_at=now))
    tx = registry.attestBatch(batch_id, ATTESTOR_DOCS, {"from": attestor})
    assert fields(tx, "BatchAttested") == {
        "batchId": batch_id,
        "attestor": attestor.address,
        "attestationHash": ATTESTOR_DOCS,
    }
    header = registry.batchInfo(batch_id)
    assert (header["status"], header["attestedAt"]) == (ATTESTED, tx.timestamp)
    assert bytes(header["attestationHash"]) == ATTESTOR_DOCS


def test_attest_batch_errors(registry, operator, attestor, issuer, now, typed_error):
    with brownie.reverts(typed_error("BatchUnknown", 1)):
        registry.attestBatch(1, ATTESTOR_DOCS, {"from": attestor})
    leaves = make_leaves(["SN-1", "SN-2"], in_service_at=now)
    batch_id, _ = register(registry, operator, issuer, leaves, keys=[leaves[0].gpu_key])
    with brownie.reverts(typed_error("BatchNotInStatus", batch_id, REGISTERING, REGISTERED)):
        registry.attestBatch(batch_id, ATTESTOR_DOCS, {"from": attestor})
    registry.registerGpus(batch_id, [leaves[1].gpu_key], {"from": operator})
    registry.attestBatch(batch_id, ATTESTOR_DOCS, {"from": attestor})
    with brownie.reverts(typed_error("BatchNotInStatus", batch_id, ATTESTED, REGISTERED)):
        registry.attestBatch(batch_id, ATTESTOR_DOCS, {"from": attestor})


def test_attest_batch_is_attestor_only(registry, operator, issuer, rando, now, typed_error):
    batch_id, _ = register(registry, operator, issuer, make_leaves(["SN-1"], in_service_at=now))
    for account in (rando, operator):
        with brownie.reverts(unauthorized(typed_error, account, registry.ATTESTOR_ROLE())):
            registry.attestBatch(batch_id, ATTESTOR_DOCS, {"from": account})


# ---- pledgeBatch ----


def test_pledge_batch(registry, operator, attestor, issuer, note, now, plain):
    leaves = make_leaves(["SN-1", "SN-2"], in_service_at=now - 2 * QUARTER - HOUR)
    batch_id, _ = register(registry, operator, issuer, leaves)
    registry.attestBatch(batch_id, ATTESTOR_DOCS, {"from": attestor})
    tx = registry.pledgeBatch(batch_id, note, {"from": operator})
    # pledged, but not counted before its challenge window has passed
    assert fields(tx, "BatchPledged") == {"batchId": batch_id, "noteId": note, "collateralValue": 0}
    header = registry.batchInfo(batch_id)
    assert (header["status"], header["noteId"]) == (PLEDGED, note)
    assert plain(registry.livePledgeOf(batch_id)) == (True, note)
    assert plain(registry.noteInfo(note))[5] == (batch_id,)
    wait(CHALLENGE_WINDOW)
    first_value = value_of(2 * GPU_COST, 6666)
    assert registry.collateralValue(note) == first_value

    # a second batch, H100 (class 1, 5 %/quarter): the event carries the total that counts
    leaves = make_leaves(["SN-3"], in_service_at=now - 2 * QUARTER - HOUR, model=H100)
    batch_2, _ = register(registry, operator, issuer, leaves)
    registry.attestBatch(batch_2, ATTESTOR_DOCS, {"from": attestor})
    tx = registry.pledgeBatch(batch_2, note, {"from": operator})
    assert tx.events["BatchPledged"]["collateralValue"] == first_value
    wait(CHALLENGE_WINDOW)
    total = first_value + value_of(GPU_COST, 9000)
    assert registry.collateralValue(note) == total
    assert plain(registry.noteInfo(note))[5] == (batch_id, batch_2)


def test_pledge_batch_errors(
    registry,
    operator,
    other_operator,
    attestor,
    issuer,
    other_issuer,
    manager,
    note,
    other_note,
    opener,
    factory,
    tranche_stub,
    admin,
    now,
    typed_error,
):
    leaves = make_leaves(["SN-1"], in_service_at=now)
    with brownie.reverts(typed_error("BatchUnknown", 1)):
        registry.pledgeBatch(1, note, {"from": operator})
    batch_id, _ = register(registry, operator, issuer, leaves)
    with brownie.reverts(typed_error("CallerNotBatchOperator", batch_id, other_operator)):
        registry.pledgeBatch(batch_id, note, {"from": other_operator})
    with brownie.reverts(typed_error("BatchNotInStatus", batch_id, REGISTERED, ATTESTED)):
        registry.pledgeBatch(batch_id, note, {"from": operator})
    registry.attestBatch(batch_id, ATTESTOR_DOCS, {"from": attestor})
    with brownie.reverts(typed_error("NoteUnknown", 99)):
        registry.pledgeBatch(batch_id, 99, {"from": operator})
    with brownie.reverts(typed_error("BatchIssuerMismatch", batch_id, issuer, other_issuer)):
        registry.pledgeBatch(batch_id, other_note, {"from": operator})

    unbound = open_note(registry, factory, issuer)
    with brownie.reverts(typed_error("NoteNotBound", unbound)):
        registry.pledgeBatch(batch_id, unbound, {"from": operator})
    stepped_in = opener(issuer)
    registry.transferLiens(stepped_in, manager, {"from": manager})
    with brownie.reverts(typed_error("NoteNotOpen", stepped_in, NOTE_STEPPED_IN)):
        registry.pledgeBatch(batch_id, stepped_in, {"from": operator})
    closed = opener(issuer, tranches=[tranche_stub])
    settle(tranche_stub, admin)
    registry.releaseNote(closed, {"from": manager})
    with brownie.reverts(typed_error("NoteNotOpen", closed, NOTE_RELEASED)):
        registry.pledgeBatch(batch_id, closed, {"from": operator})

    registry.pledgeBatch(batch_id, note, {"from": operator})
    with brownie.reverts(typed_error("BatchNotInStatus", batch_id, PLEDGED, ATTESTED)):
        registry.pledgeBatch(batch_id, note, {"from": operator})

    # an attested batch left unpledged lapses after the pledge window
    late, _ = register(registry, operator, issuer, make_leaves(["SN-9"], in_service_at=now))
    registry.attestBatch(late, ATTESTOR_DOCS, {"from": attestor})
    wait(PLEDGE_WINDOW)
    deadline = registry.batchInfo(late)["attestedAt"] + PLEDGE_WINDOW
    with brownie.reverts(typed_error("BatchExpired", late, deadline)):
        registry.pledgeBatch(late, note, {"from": operator})


def test_pledge_batch_limit(registry, operator, attestor, issuer, note, now, typed_error):
    for i in range(32):
        leaves = make_leaves([f"SN-{i}"], in_service_at=now)
        register_attest_pledge(registry, operator, attestor, issuer, note, leaves)
    assert len(registry.noteInfo(note)[5]) == 32
    batch_id, _ = register(registry, operator, issuer, make_leaves(["SN-X"], in_service_at=now))
    registry.attestBatch(batch_id, ATTESTOR_DOCS, {"from": attestor})
    with brownie.reverts(typed_error("NoteBatchLimitReached", note, 32)):
        registry.pledgeBatch(batch_id, note, {"from": operator})
    # collateralValue loops over all 32 batches
    wait(CHALLENGE_WINDOW)
    assert registry.collateralValue(note) == 32 * GPU_COST


def test_pledge_needs_the_notes_consent(
    registry, opener, operator, other_operator, attestor, issuer, now, typed_error
):
    """Only an operator the note names may pledge into it: another operator
    of the same issuer cannot fill its slots."""
    note_id = opener(issuer, operators=[operator])
    leaves = make_leaves(["SN-9"], in_service_at=now)
    batch_id, _ = register(registry, other_operator, issuer, leaves)
    registry.attestBatch(batch_id, ATTESTOR_DOCS, {"from": attestor})
    with brownie.reverts(typed_error("CallerNotNoteOperator", note_id, other_operator)):
        registry.pledgeBatch(batch_id, note_id, {"from": other_operator})


# ---- releaseNote ----


def test_release_note_by_anyone_once_tranches_settled(
    registry, opener, issuer, rando, manager, stubs, admin, pledged, plain, typed_error
):
    batch_id, _, _ = pledged
    note_id = opener(issuer, tranches=stubs)
    # the servicer has no say: only the tranches' state does
    for account in (rando, manager, issuer):
        with brownie.reverts(typed_error("NoteNotRepaid", note_id)):
            registry.releaseNote(note_id, {"from": account})
    stubs[0].setRepaid(True, {"from": admin})
    with brownie.reverts(typed_error("NoteNotRepaid", note_id)):
        registry.releaseNote(note_id, {"from": rando})
    stubs[1].setState(4, {"from": admin})  # Cancelled: never drawn
    tx = registry.releaseNote(note_id, {"from": rando})
    assert fields(tx, "NoteReleased") == {"noteId": note_id, "by": rando.address}
    assert registry.noteInfo(note_id)["status"] == NOTE_RELEASED


def test_release_note_frees_its_batches(
    registry, manager, note, pledged, tranche_stub, admin, rando, plain
):
    batch_id, _, _ = pledged
    value = registry.batchValue(batch_id)
    settle(tranche_stub, admin)
    registry.releaseNote(note, {"from": rando})
    assert registry.noteInfo(note)["status"] == NOTE_RELEASED
    assert plain(registry.livePledgeOf(batch_id)) == (False, note)
    assert registry.batchInfo(batch_id)["status"] == PLEDGED  # not rewritten: O(1)
    assert registry.collateralValue(note) == 0
    assert registry.batchValue(batch_id) == value


def test_release_note_by_the_lienholder_after_step_in(
    registry, manager, trustee, rando, note, pledged, typed_error
):
    """After a default with a loss the tranches never reach Repaid: the
    trustee (and only the trustee) releases the liens."""
    registry.transferLiens(note, trustee, {"from": manager})
    for account in (manager, rando):
        with brownie.reverts(typed_error("NoteNotRepaid", note)):
            registry.releaseNote(note, {"from": account})
    tx = registry.releaseNote(note, {"from": trustee})
    assert fields(tx, "NoteReleased") == {"noteId": note, "by": trustee.address}
    assert registry.noteInfo(note)["status"] == NOTE_RELEASED
    assert registry.collateralValue(note) == 0


def test_release_note_errors(
    registry, factory, issuer, note, tranche_stub, admin, rando, typed_error
):
    with brownie.reverts(typed_error("NoteUnknown", 5)):
        registry.releaseNote(5, {"from": rando})
    unbound = open_note(registry, factory, issuer)
    with brownie.reverts(typed_error("NoteNotBound", unbound)):
        registry.releaseNote(unbound, {"from": rando})
    settle(tranche_stub, admin)
    registry.releaseNote(note, {"from": rando})
    with brownie.reverts(typed_error("NoteNotOpen", note, NOTE_RELEASED)):
        registry.releaseNote(note, {"from": rando})


# ---- transferLiens ----


def test_transfer_liens(registry, manager, trustee, note, pledged, plain):
    batch_id, _, _ = pledged
    value = registry.collateralValue(note)
    tx = registry.transferLiens(note, trustee, {"from": manager})
    assert fields(tx, "LiensTransferred") == {"noteId": note, "trustee": trustee.address}
    info = plain(registry.noteInfo(note))
    assert info[2:5] == (NOTE_STEPPED_IN, trustee.address, 0)
    # the batches stay live and keep counting, now for the trustee
    assert plain(registry.livePledgeOf(batch_id)) == (True, note)
    assert registry.collateralValue(note) == value


def test_transfer_liens_errors(registry, factory, issuer, manager, trustee, note, typed_error):
    with brownie.reverts(typed_error("NoteUnknown", 4)):
        registry.transferLiens(4, trustee, {"from": manager})
    with brownie.reverts(typed_error("CallerNotNoteServicer", note, issuer)):
        registry.transferLiens(note, trustee, {"from": issuer})
    unbound = open_note(registry, factory, issuer)
    with brownie.reverts(typed_error("CallerNotNoteServicer", unbound, manager)):
        registry.transferLiens(unbound, trustee, {"from": manager})
    with brownie.reverts(typed_error("ZeroAddress")):
        registry.transferLiens(note, brownie.ZERO_ADDRESS, {"from": manager})
    registry.transferLiens(note, trustee, {"from": manager})
    with brownie.reverts(typed_error("NoteNotOpen", note, NOTE_STEPPED_IN)):
        registry.transferLiens(note, trustee, {"from": manager})
    registry.releaseNote(note, {"from": trustee})
    with brownie.reverts(typed_error("NoteNotOpen", note, NOTE_RELEASED)):
        registry.transferLiens(note, trustee, {"from": manager})


# ---- fraud proofs ----


@pytest.mark.parametrize(
    "field, value, reason",
    [
        ("index", 3, "index out of range"),
        ("model", H100, "model mismatch"),
        ("in_service_at", -1, "in service before batch"),
    ],
)
def test_prove_bad_leaf(
    registry, operator, attestor, issuer, note, pledged, now, rando, field, value, reason
):
    in_service_at = now - HOUR
    leaves = make_leaves(["SN-1", "SN-2", "SN-3"], in_service_at=in_service_at)
    if field == "in_service_at":
        value = in_service_at - 1
    bad = replace(leaves[2], **{field: value})
    tree_leaves = [leaves[0], leaves[1], bad]
    header = {"count": 3, "model": B200, "inServiceAt": in_service_at}
    keys = [leaf.gpu_key for leaf in leaves]
    batch_id, tree = register_attest_pledge(
        registry, operator, attestor, issuer, note, tree_leaves, keys=keys, **header
    )
    counted = registry.collateralValue(note)  # `pledged` only: the new batch is not final
    tx = registry.proveBadLeaf(batch_id, bad.as_tuple(), tree.proof(2), {"from": rando})
    assert fields(tx, "BatchVoided") == {
        "batchId": batch_id,
        "noteId": note,
        "gpuKey": bad.gpu_key,
        "reason": reason,
    }
    assert fields(tx, "NoteDefectProven") == {"noteId": note, "batchId": batch_id, "defects": 1}
    assert registry.batchInfo(batch_id)["status"] == VOIDED
    assert registry.noteInfo(note)["batchIds"] == [pledged[0]]
    wait(CHALLENGE_WINDOW)
    assert registry.collateralValue(note) == counted
    # the voided batch keeps its lien on its GPUs while the note is live
    assert registry.holderOf(leaves[0].gpu_key) == (batch_id, True)
    assert registry.livePledgeOf(batch_id) == (False, note)


def test_prove_bad_leaf_on_an_unpledged_batch_frees_its_gpus(
    registry, operator, attestor, issuer, now, rando
):
    leaves = make_leaves(["SN-1", "SN-2"], in_service_at=now)
    bad = replace(leaves[1], index=7)
    batch_id, tree = register(
        registry, operator, issuer, [leaves[0], bad], keys=[leaf.gpu_key for leaf in leaves]
    )
    tx = registry.proveBadLeaf(batch_id, bad.as_tuple(), tree.proof(1), {"from": rando})
    assert fields(tx, "BatchVoided")["noteId"] == 0
    assert "NoteDefectProven" not in tx.events
    assert registry.holderOf(leaves[0].gpu_key) == (batch_id, False)


def test_prove_bad_leaf_errors(registry, opener, operator, attestor, issuer, now, typed_error):
    note = opener(issuer)
    leaves = make_leaves(["E-1", "E-2", "E-3"], in_service_at=now - HOUR)
    batch_id, tree = register_attest_pledge(registry, operator, attestor, issuer, note, leaves)
    # a consistent leaf
    with brownie.reverts(typed_error("LeafConsistent", batch_id)):
        registry.proveBadLeaf(batch_id, leaves[2].as_tuple(), tree.proof(2))
    # a forged leaf that is not in the tree
    forged = replace(leaves[2], index=99)
    with brownie.reverts(typed_error("ProofInvalid", batch_id, forged.gpu_key)):
        registry.proveBadLeaf(batch_id, forged.as_tuple(), tree.proof(2))
    with brownie.reverts(typed_error("BatchUnknown", 50)):
        registry.proveBadLeaf(50, leaves[0].as_tuple(), tree.proof(0))
    # after the challenge window nothing can void the batch: it counts
    wait(CHALLENGE_WINDOW)
    closed_at = registry.batchInfo(batch_id)["attestedAt"] + CHALLENGE_WINDOW
    with brownie.reverts(typed_error("ChallengeWindowClosed", batch_id, closed_at)):
        registry.proveBadLeaf(batch_id, leaves[2].as_tuple(), tree.proof(2))


def test_prove_key_mismatch(registry, operator, attestor, issuer, note, now, rando, typed_error):
    leaves = make_leaves([f"K-{i}" for i in range(5)], in_service_at=now)
    keys = [leaf.gpu_key for leaf in leaves]
    keys[3] = gpu_key("NVIDIA", "ANOTHER")
    batch_id, tree = register_attest_pledge(
        registry, operator, attestor, issuer, note, leaves, keys=keys, chunk=2
    )
    args = (batch_id, leaves[3].as_tuple(), tree.proof(3))
    with brownie.reverts(typed_error("ChunkKeysMismatch", batch_id, 2)):
        registry.proveKeyMismatch(*args, 2, [keys[2], leaves[3].gpu_key])
    with brownie.reverts(typed_error("LeafConsistent", batch_id)):
        registry.proveKeyMismatch(
            batch_id, leaves[2].as_tuple(), tree.proof(2), 2, keys[2:4], {"from": rando}
        )
    with brownie.reverts(typed_error("LeafConsistent", batch_id)):
        registry.proveKeyMismatch(*args, 0, keys[0:2])  # index outside the chunk
    tx = registry.proveKeyMismatch(*args, 2, keys[2:4], {"from": rando})
    assert fields(tx, "BatchVoided")["reason"] == "key mismatch"
    assert registry.noteInfo(note)["defects"] == 1


# ---- valuation ----


def test_depreciation_factors(registry, admin, typed_error, chain):
    factors = [registry.depreciationFactorBps(0, q) for q in range(8)]
    assert factors == [10_000, 8_333, 6_666, 4_999, 3_332, 1_665, 0, 0]  # 2 quarters: 66.66 %
    assert registry.depreciationFactorBps(0, 2**256 - 1) == 0
    assert registry.depreciationFactorBps(1, 4) == 8_000  # 20 %/yr
    assert registry.depreciationFactorBps(2, 4) == 8_500  # 15 %/yr
    assert registry.depreciationFactorBps(2, 26) == 250
    assert registry.depreciationFactorBps(2, 27) == 0
    registry.setDepreciationClass(9, 1_000, 2_500, {"from": admin})
    assert [registry.depreciationFactorBps(9, q) for q in (0, 7, 8, 100, 2**200)] == [
        10_000,
        3_000,
        2_500,
        2_500,
        2_500,
    ]
    # no markdown at all raises values: queued, applied after the delay
    registry.setDepreciationClass(9, 0, 0, {"from": admin})
    assert registry.depreciationFactorBps(9, 2**255) == 2_500
    chain.sleep(VALUATION_CHANGE_DELAY)
    registry.executeDepreciationClass(9, {"from": admin})
    assert registry.depreciationFactorBps(9, 2**255) == 10_000
    with brownie.reverts(typed_error("DepreciationClassUnknown", 8)):
        registry.depreciationFactorBps(8, 1)


def test_batch_value_follows_the_curve(registry, operator, issuer, admin, now, chain):
    cost = 12_345_679  # odd per-GPU cost, to see the rounding
    leaves = make_leaves(
        ["SN-1", "SN-2", "SN-3"], in_service_at=now - 2 * QUARTER - HOUR, cost=cost
    )
    batch_id, _ = register(registry, operator, issuer, leaves)
    total = 3 * cost
    assert registry.batchValue(batch_id) == total * 6_666 // BPS  # 66.66 % after 2 quarters

    # a new generation ships: 25 % obsolescence haircut on the model, at once
    tx = registry.setModel(B200, 0, 2_500, {"from": admin})
    assert fields(tx, "ModelSet") == {"model": B200, "classId": 0, "haircutBps": 2_500}
    assert plain_value(tuple(registry.modelInfo(B200))) == (0, 2_500, True)
    expected = total * 6_666 * 7_500 // BPS**2
    assert expected * BPS**2 < total * 6_666 * 7_500  # rounded down
    assert registry.batchValue(batch_id) == expected == value_of(total, 6_666, 2_500)

    # one more quarter
    chain.sleep(QUARTER)
    chain.mine()
    assert registry.batchValue(batch_id) == value_of(total, 4_999, 2_500)
    # fully written off after six quarters; never negative
    chain.sleep(3 * QUARTER)
    chain.mine()
    assert registry.batchValue(batch_id) == 0


def test_floor_and_reclassification(registry, operator, issuer, admin, now, chain):
    leaves = make_leaves(["SN-1"], in_service_at=now - 10 * QUARTER - HOUR, model=H100)
    batch_id, _ = register(registry, operator, issuer, leaves)
    assert registry.batchValue(batch_id) == value_of(GPU_COST, 5_000)
    registry.setDepreciationClass(1, 500, 6_000, {"from": admin})  # a higher floor: queued
    assert registry.batchValue(batch_id) == value_of(GPU_COST, 5_000)
    chain.sleep(VALUATION_CHANGE_DELAY)
    tx = registry.executeDepreciationClass(1, {"from": admin})
    assert fields(tx, "DepreciationClassSet") == {
        "classId": 1,
        "quarterlyMarkdownBps": 500,
        "floorBps": 6_000,
    }
    assert registry.batchValue(batch_id) == value_of(GPU_COST, 6_000)  # floor respected
    registry.setModel(H100, 1, 10_000, {"from": admin})
    assert registry.batchValue(batch_id) == 0
    # moving H100 to a slower class raises values: queued, then applied
    tx = registry.setModel(H100, 2, 10_000, {"from": admin})
    assert "ModelQueued" in tx.events and registry.modelInfo(H100)["classId"] == 1
    assert plain_value(tuple(registry.pendingModel(H100)))[:2] == (2, 10_000)
    registry.cancelModel(H100, {"from": admin})
    assert registry.pendingModel(H100)[2] == 0
    # moving it to a faster one lowers values: at once
    registry.setModel(H100, 0, 0, {"from": admin})  # queued: the haircut cut raises values
    registry.setModel(H100, 0, 10_000, {"from": admin})
    assert registry.modelInfo(H100)["classId"] == 0


def test_collateral_value_counts_live_batches_only(registry, operator, attestor, issuer, note, now):
    in_service = now - 4 * QUARTER - HOUR
    batch_ids = []
    for class_id, model in enumerate((B200, H100, A100)):
        leaves = make_leaves(
            [f"SN-{class_id}-{i}" for i in range(4)], in_service_at=in_service, model=model
        )
        batch_id, _ = register_attest_pledge(registry, operator, attestor, issuer, note, leaves)
        batch_ids.append(batch_id)
    assert registry.collateralValue(note) == 0  # not final yet
    wait(CHALLENGE_WINDOW)
    expected = sum(value_of(4 * GPU_COST, f) for f in (3_332, 8_000, 8_500))
    assert registry.collateralValue(note) == expected
    # an attested batch that is not pledged does not count
    leaves = make_leaves(["SN-idle"], in_service_at=in_service)
    idle, _ = register(registry, operator, issuer, leaves)
    registry.attestBatch(idle, ATTESTOR_DOCS, {"from": attestor})
    assert registry.collateralValue(note) == expected
    assert registry.batchValue(idle) == value_of(GPU_COST, 3_332)


def test_valuation_setters_errors(registry, admin, typed_error):
    with brownie.reverts(typed_error("BpsOutOfRange", 10_001)):
        registry.setDepreciationClass(4, 10_001, 0, {"from": admin})
    with brownie.reverts(typed_error("BpsOutOfRange", 10_001)):
        registry.setDepreciationClass(4, 100, 10_001, {"from": admin})
    with brownie.reverts(typed_error("BpsOutOfRange", 10_001)):
        registry.setModel(H100, 1, 10_001, {"from": admin})
    with brownie.reverts(typed_error("DepreciationClassUnknown", 77)):
        registry.setModel(H100, 77, 0, {"from": admin})
    with brownie.reverts(typed_error("ValuationChangeNotQueued")):
        registry.executeModel(H100, {"from": admin})
    with brownie.reverts(typed_error("ValuationChangeNotQueued")):
        registry.cancelModel(H100, {"from": admin})
    registry.setDepreciationClass(4, 10_000, 10_000, {"from": admin})
    assert registry.depreciationFactorBps(4, 3) == 10_000


def test_valuation_setters_are_valuation_role_only(
    registry, admin, rando, issuer, accounts, typed_error
):
    role = registry.VALUATION_ROLE()
    for account in (rando, issuer):
        with brownie.reverts(unauthorized(typed_error, account, role)):
            registry.setDepreciationClass(4, 100, 0, {"from": account})
        with brownie.reverts(unauthorized(typed_error, account, role)):
            registry.setModel(H100, 1, 100, {"from": account})
    registry.grantRole(role, rando, {"from": admin})
    registry.setModel(H100, 1, 100, {"from": rando})
    registry.setDepreciationClass(4, 100, 0, {"from": rando})
    assert registry.modelInfo(H100)["haircutBps"] == 100


def test_a_new_model_waits_the_timelock(registry, admin, operator, issuer, now, typed_error):
    registry.setDepreciationClass(7, 250, 1_000, {"from": admin})  # inert: at once
    model = text_id("NVIDIA GB300")
    tx = registry.setModel(model, 7, 0, {"from": admin})
    eta = tx.events["ModelQueued"]["eta"]
    assert eta == tx.timestamp + VALUATION_CHANGE_DELAY
    leaves = make_leaves(["SN-1"], in_service_at=now - 4 * QUARTER - HOUR, model=model)
    with brownie.reverts(typed_error("ModelUnknown", model)):
        register(registry, operator, issuer, leaves)
    with brownie.reverts(revert_pattern=f"ValuationChangeNotReady: {eta}, .*"):
        registry.executeModel(model, {"from": admin})
    wait(VALUATION_CHANGE_DELAY)
    registry.executeModel(model, {"from": admin})
    batch_id, _ = register(registry, operator, issuer, leaves)
    assert registry.batchValue(batch_id) == value_of(GPU_COST, 9_000)


# ---- leaves and proofs ----


def test_leaf_hash_matches_python(registry):
    leaves = [
        GpuLeaf(0, bytes(32), bytes(32), bytes(32), bytes(32), 0, 0),
        GpuLeaf(
            2**32 - 1,
            b"\xff" * 32,
            b"\xfe" * 32,
            b"\xfd" * 32,
            b"\xfc" * 32,
            2**128 - 1,
            2**40 - 1,
        ),
        make_leaves(["SN-1"], in_service_at=1_700_000_000, first_index=17)[0],
    ]
    for leaf in leaves:
        assert bytes(registry.leafHash(leaf.as_tuple())) == leaf_hash(leaf)


def test_gpu_key_is_abi_encoded_vendor_and_serial(web3):
    from eth_abi import encode

    assert gpu_key("NVIDIA", "1652221000001") == keccak(
        encode(["string", "string"], ["NVIDIA", "1652221000001"])
    )
    assert gpu_key("NVIDIA", "AB") != gpu_key("NVIDIA A", "B")


def test_thousand_leaf_tree_verifies_on_chain(registry, operator, issuer, now):
    leaves = make_leaves([f"1652221{i:06d}" for i in range(1_000)], in_service_at=now - HOUR)
    batch_id, tree = register(registry, operator, issuer, leaves)
    for i in (0, 1, 2, 255, 256, 511, 998, 999):
        assert len(tree.proof(i)) in (9, 10)
        assert registry.verifyGpu(batch_id, leaves[i].as_tuple(), tree.proof(i))
    # a proof for another leaf, or a tampered leaf, does not verify
    assert not registry.verifyGpu(batch_id, leaves[3].as_tuple(), tree.proof(4))
    tampered = replace(leaves[5], cost=1)
    assert not registry.verifyGpu(batch_id, tampered.as_tuple(), tree.proof(5))


def test_merkle_tree_is_order_independent():
    leaves = make_leaves([f"SN{i:05d}" for i in range(10_000)], in_service_at=1_700_000_000)
    tree = MerkleTree(leaves)
    assert MerkleTree(list(reversed(leaves))).root == tree.root
    for i in (0, 4_999, 9_999):
        assert verify_proof(tree.proof(i), tree.root, tree.leaf_hashes[i])
    single = MerkleTree(leaves[:1])
    assert single.root == leaf_hash(leaves[0]) and single.proof(0) == []
    with pytest.raises(ValueError):
        MerkleTree([])
    with pytest.raises(ValueError):
        GpuLeaf(2**32, bytes(32), bytes(32), bytes(32), bytes(32), 0, 0).encode()
    with pytest.raises(ValueError):
        GpuLeaf(0, bytes(31), bytes(32), bytes(32), bytes(32), 0, 0).encode()


# ---- gas at fleet scale ----


def test_ten_thousand_gpus_cost_at_most_24000_gas_per_gpu(
    registry, operator, other_operator, attestor, issuer, other_issuer, note, now, typed_error
):
    """Register (header and 20 chunks of 500 keys), attest and pledge
    10,000 GPUs: one new storage slot each, at most 24,000 gas per GPU, every
    transaction under the 16,777,216 cap. The same fleet registered again
    elsewhere reverts at once."""
    leaves = make_leaves([f"1652221{i:06d}" for i in range(10_000)], in_service_at=now - HOUR)
    reg, tree = registration(issuer, leaves)
    txs = [registry.registerBatch(reg, {"from": operator})]
    batch_id = txs[0].events["BatchRegistered"]["batchId"]
    for _, keys in key_chunks([leaf.gpu_key for leaf in leaves], 500):
        txs.append(registry.registerGpus(batch_id, keys, {"from": operator}))
    txs.append(registry.attestBatch(batch_id, ATTESTOR_DOCS, {"from": attestor}))
    txs.append(registry.pledgeBatch(batch_id, note, {"from": operator}))
    assert max(tx.gas_used for tx in txs) < 16_777_216
    assert sum(tx.gas_used for tx in txs) / 10_000 <= 24_000
    assert len(txs) == 23

    reg, _ = registration(other_issuer, leaves[4_321:4_322])
    other = registry.registerBatch(reg, {"from": other_operator}).events["BatchRegistered"][
        "batchId"
    ]
    with brownie.reverts(typed_error("GpuHeld", leaves[4_321].gpu_key, batch_id)):
        registry.registerGpus(other, [leaves[4_321].gpu_key], {"from": other_operator})
