"""CollateralRegistry: batches of GPUs as Merkle roots, pledges, fraud proofs, valuation."""

import time
from dataclasses import replace

import brownie
import pytest
from eth_utils import keccak

from gpucredit.merkle import GpuLeaf, MerkleTree, gpu_key, leaf_hash, text_id, verify_proof

QUARTER = 7_889_400
HOUR = 3600
VALUATION_CHANGE_DELAY = 2 * 86_400  # value-raising valuation changes wait this long
BPS = 10_000

H100 = text_id("NVIDIA H100 SXM5 80GB")
B200 = text_id("NVIDIA B200 SXM 180GB")
SITE = text_id("ams-1")
OPERATOR_DOCS = text_id("operator attestation documents")
ATTESTOR_DOCS = text_id("attestor report 2025-Q3")
GPU_COST = 25_000_000_000  # 25,000 USD with 6 decimals

# enum values
NOTE_OPEN, NOTE_RELEASED, NOTE_STEPPED_IN = 1, 2, 3
REGISTERED, ATTESTED, PLEDGED, VOIDED = 1, 2, 3, 4


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
    """Batch of three H100s (class 0) pledged to `note`, in service two
    quarters and an hour ago."""
    leaves = make_leaves(["SN-A", "SN-B", "SN-C"], in_service_at=now - 2 * QUARTER - HOUR)
    batch_id, tree = register_attest_pledge(registry, operator, attestor, issuer, note, leaves)
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
    model=H100,
    class_id=0,
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
            class_id=class_id,
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
        "classId": leaves[0].class_id,
        "inServiceAt": min(leaf.in_service_at for leaf in leaves),
        "attestationHash": OPERATOR_DOCS,
    }
    fields.update(overrides)
    order = [
        "issuer",
        "root",
        "count",
        "totalCost",
        "model",
        "classId",
        "inServiceAt",
        "attestationHash",
    ]
    return tuple(fields[key] for key in order), tree


def register(registry, operator, issuer, leaves, **overrides):
    reg, tree = registration(issuer, leaves, **overrides)
    tx = registry.registerBatch(reg, {"from": operator})
    return tx.events["BatchRegistered"]["batchId"], tree


def register_attest_pledge(registry, operator, attestor, issuer, note_id, leaves, **overrides):
    batch_id, tree = register(registry, operator, issuer, leaves, **overrides)
    registry.attestBatch(batch_id, ATTESTOR_DOCS, {"from": attestor})
    registry.pledgeBatch(batch_id, note_id, {"from": operator})
    return batch_id, tree


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
    for name in ("ISSUER_ROLE", "OPERATOR_ROLE", "ATTESTOR_ROLE", "VALUATION_ROLE"):
        assert bytes(getattr(registry, name)()) == keccak(text=name)
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


# ---- registerBatch ----


def test_register_batch(registry, operator, issuer, now, plain):
    leaves = make_leaves(["SN-1", "SN-2"], in_service_at=now - HOUR, class_id=1)
    reg, tree = registration(issuer, leaves)
    tx = registry.registerBatch(reg, {"from": operator})
    assert fields(tx, "BatchRegistered") == {
        "batchId": 1,
        "operator": operator.address,
        "issuer": issuer.address,
        "root": tree.root,
        "count": 2,
        "totalCost": 2 * GPU_COST,
        "model": H100,
        "classId": 1,
        "inServiceAt": now - HOUR,
        "attestationHash": OPERATOR_DOCS,
    }
    assert plain(registry.batchInfo(1)) == (
        tree.root,
        operator.address,
        2,
        1,
        now - HOUR,
        REGISTERED,
        issuer.address,
        0,
        2 * GPU_COST,
        H100,
        OPERATOR_DOCS,
    )
    assert plain(registry.livePledgeOf(1)) == (False, 0)
    assert registry.batchValue(1) == 2 * GPU_COST  # less than a quarter in service
    second, _ = register(registry, operator, issuer, leaves)
    assert second == 2


def test_register_batch_errors(registry, operator, issuer, now, chain, typed_error):
    leaves = make_leaves(["SN-1"], in_service_at=now - HOUR)
    reg, _ = registration(issuer, leaves, count=0)
    with brownie.reverts(typed_error("BatchEmpty")):
        registry.registerBatch(reg, {"from": operator})
    reg, _ = registration(issuer, leaves, classId=7)
    with brownie.reverts(typed_error("DepreciationClassUnknown", 7)):
        registry.registerBatch(reg, {"from": operator})
    future = now + 1000
    reg, _ = registration(issuer, leaves, inServiceAt=future)
    with brownie.reverts(typed_error("BatchInServiceInFuture", future)):
        registry.registerBatch(reg, {"from": operator})
    reg, _ = registration(brownie.ZERO_ADDRESS, leaves)
    with brownie.reverts(typed_error("ZeroAddress")):
        registry.registerBatch(reg, {"from": operator})


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
    assert header["status"] == ATTESTED
    assert bytes(header["attestationHash"]) == ATTESTOR_DOCS


def test_attest_batch_errors(registry, operator, attestor, issuer, now, typed_error):
    with brownie.reverts(typed_error("BatchUnknown", 1)):
        registry.attestBatch(1, ATTESTOR_DOCS, {"from": attestor})
    batch_id, _ = register(registry, operator, issuer, make_leaves(["SN-1"], in_service_at=now))
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
    first_value = value_of(2 * GPU_COST, 6666)
    assert fields(tx, "BatchPledged") == {
        "batchId": batch_id,
        "noteId": note,
        "collateralValue": first_value,
    }
    header = registry.batchInfo(batch_id)
    assert (header["status"], header["noteId"]) == (PLEDGED, note)
    assert plain(registry.livePledgeOf(batch_id)) == (True, note)
    assert plain(registry.noteInfo(note))[5] == (batch_id,)

    # a second batch, class 1 (5 %/quarter): the event carries the new total
    leaves = make_leaves(["SN-3"], in_service_at=now - 2 * QUARTER - HOUR, class_id=1)
    batch_2, _ = register(registry, operator, issuer, leaves)
    registry.attestBatch(batch_2, ATTESTOR_DOCS, {"from": attestor})
    tx = registry.pledgeBatch(batch_2, note, {"from": operator})
    total = first_value + value_of(GPU_COST, 9000)
    assert tx.events["BatchPledged"]["collateralValue"] == total
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


def test_pledge_batch_limit(registry, operator, attestor, issuer, note, now, typed_error):
    leaves = make_leaves(["SN-1"], in_service_at=now)
    reg, _ = registration(issuer, leaves)
    for _ in range(32):
        batch_id = registry.registerBatch(reg, {"from": operator}).events["BatchRegistered"][
            "batchId"
        ]
        registry.attestBatch(batch_id, ATTESTOR_DOCS, {"from": attestor})
        registry.pledgeBatch(batch_id, note, {"from": operator})
    assert len(registry.noteInfo(note)[5]) == 32
    batch_id = registry.registerBatch(reg, {"from": operator}).events["BatchRegistered"]["batchId"]
    registry.attestBatch(batch_id, ATTESTOR_DOCS, {"from": attestor})
    with brownie.reverts(typed_error("NoteBatchLimitReached", note, 32)):
        registry.pledgeBatch(batch_id, note, {"from": operator})
    # collateralValue loops over all 32 batches
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


# ---- proveDoublePledge ----


@pytest.fixture
def double_pledge(
    registry,
    operator,
    other_operator,
    attestor,
    issuer,
    other_issuer,
    note,
    other_note,
    pledged,
    now,
):
    """`pledged` holds SN-A..SN-C for `issuer`; a later batch of
    `other_issuer` pledges SN-X and SN-B again."""
    batch_a, tree_a, leaves_a = pledged
    leaves_b = make_leaves(["SN-X", "SN-B"], in_service_at=now - HOUR, class_id=1)
    batch_b, tree_b = register_attest_pledge(
        registry, other_operator, attestor, other_issuer, other_note, leaves_b
    )
    return (batch_a, tree_a, leaves_a), (batch_b, tree_b, leaves_b)


def test_double_pledge_across_issuers_is_caught(
    registry, note, other_note, double_pledge, rando, plain
):
    (batch_a, tree_a, leaves_a), (batch_b, tree_b, leaves_b) = double_pledge
    value_a = registry.collateralValue(note)
    assert registry.collateralValue(other_note) == value_of(2 * GPU_COST, BPS)
    key = gpu_key("NVIDIA", "SN-B")
    tx = registry.proveDoublePledge(
        batch_a,
        leaves_a[1].as_tuple(),
        tree_a.proof(1),
        batch_b,
        leaves_b[1].as_tuple(),
        tree_b.proof(1),
        {"from": rando},
    )
    assert fields(tx, "DoublePledgeProven") == {
        "gpuKey": key,
        "keptBatchId": batch_a,
        "voidedBatchId": batch_b,
        "prover": rando.address,
    }
    assert fields(tx, "BatchVoided") == {
        "batchId": batch_b,
        "noteId": other_note,
        "gpuKey": key,
        "reason": "double pledge",
    }
    assert fields(tx, "NoteDefectProven") == {
        "noteId": other_note,
        "batchId": batch_b,
        "defects": 1,
    }
    assert [event.name for event in tx.events] == [
        "DoublePledgeProven",
        "BatchVoided",
        "NoteDefectProven",
    ]
    # penalised: the later batch no longer counts, its note is deficient
    assert registry.batchInfo(batch_b)["status"] == VOIDED
    assert registry.batchValue(batch_b) == 0
    assert plain(registry.livePledgeOf(batch_b)) == (False, other_note)
    assert registry.collateralValue(other_note) == 0
    assert registry.noteInfo(other_note)["defects"] == 1
    # the earlier pledge is untouched
    assert registry.collateralValue(note) == value_a
    assert registry.noteInfo(note)["defects"] == 0
    assert registry.livePledgeOf(batch_a)[0]


def test_double_pledge_voids_the_later_batch_whatever_the_order(
    registry, other_note, double_pledge
):
    (batch_a, tree_a, leaves_a), (batch_b, tree_b, leaves_b) = double_pledge
    tx = registry.proveDoublePledge(
        batch_b,
        leaves_b[1].as_tuple(),
        tree_b.proof(1),
        batch_a,
        leaves_a[1].as_tuple(),
        tree_a.proof(1),
    )
    assert tx.events["DoublePledgeProven"]["keptBatchId"] == batch_a
    assert tx.events["DoublePledgeProven"]["voidedBatchId"] == batch_b
    assert registry.batchInfo(batch_b)["status"] == VOIDED


def test_double_pledge_within_one_batch(
    registry, operator, attestor, issuer, note, now, rando, plain
):
    leaves = make_leaves(["SN-1", "SN-2", "SN-3", "SN-1"], in_service_at=now - HOUR)
    batch_id, tree = register_attest_pledge(registry, operator, attestor, issuer, note, leaves)
    tx = registry.proveDoublePledge(
        batch_id,
        leaves[0].as_tuple(),
        tree.proof(0),
        batch_id,
        leaves[3].as_tuple(),
        tree.proof(3),
        {"from": rando},
    )
    assert fields(tx, "DoublePledgeProven") == {
        "gpuKey": gpu_key("NVIDIA", "SN-1"),
        "keptBatchId": 0,
        "voidedBatchId": batch_id,
        "prover": rando.address,
    }
    assert tx.events["BatchVoided"]["batchId"] == batch_id
    assert registry.batchInfo(batch_id)["status"] == VOIDED
    assert registry.collateralValue(note) == 0
    assert plain(registry.noteInfo(note))[4] == 1


def test_double_pledge_within_one_batch_at_the_same_index(
    registry, operator, attestor, issuer, note, now
):
    """Two distinct leaves claim the same index for one GPU: still a duplicate."""
    leaves = make_leaves(["SN-1", "SN-2"], in_service_at=now - HOUR)
    twin = replace(leaves[0], site_id=text_id("other site"))
    tree_leaves = [*leaves, twin]
    batch_id, tree = register_attest_pledge(
        registry, operator, attestor, issuer, note, tree_leaves, count=2
    )
    registry.proveDoublePledge(
        batch_id,
        leaves[0].as_tuple(),
        tree.proof(0),
        batch_id,
        twin.as_tuple(),
        tree.proof(2),
    )
    assert registry.batchInfo(batch_id)["status"] == VOIDED


def test_double_pledge_rejects_non_conflicting_proofs(registry, double_pledge, typed_error):
    (batch_a, tree_a, leaves_a), (batch_b, tree_b, leaves_b) = double_pledge
    # different GPUs
    with brownie.reverts(typed_error("ProofsNotConflicting")):
        registry.proveDoublePledge(
            batch_a,
            leaves_a[0].as_tuple(),
            tree_a.proof(0),
            batch_b,
            leaves_b[1].as_tuple(),
            tree_b.proof(1),
        )
    # one leaf proven twice
    with brownie.reverts(typed_error("ProofsNotConflicting")):
        registry.proveDoublePledge(
            batch_a,
            leaves_a[1].as_tuple(),
            tree_a.proof(1),
            batch_a,
            leaves_a[1].as_tuple(),
            tree_a.proof(1),
        )


def test_double_pledge_rejects_invalid_proofs(registry, double_pledge, typed_error):
    (batch_a, tree_a, leaves_a), (batch_b, tree_b, leaves_b) = double_pledge
    key = leaves_a[1].gpu_key
    with brownie.reverts(typed_error("ProofInvalid", batch_a, key)):
        registry.proveDoublePledge(
            batch_a,
            leaves_a[1].as_tuple(),
            tree_a.proof(0),
            batch_b,
            leaves_b[1].as_tuple(),
            tree_b.proof(1),
        )
    with brownie.reverts(typed_error("ProofInvalid", batch_b, key)):
        registry.proveDoublePledge(
            batch_a,
            leaves_a[1].as_tuple(),
            tree_a.proof(1),
            batch_b,
            leaves_b[1].as_tuple(),
            tree_a.proof(1),
        )
    # a leaf of batch B proven against batch A's root
    with brownie.reverts(typed_error("ProofInvalid", batch_a, key)):
        registry.proveDoublePledge(
            batch_a,
            leaves_b[1].as_tuple(),
            tree_b.proof(1),
            batch_b,
            leaves_b[1].as_tuple(),
            tree_b.proof(1),
        )


def test_double_pledge_needs_live_batches(
    registry,
    operator,
    attestor,
    issuer,
    tranche_stub,
    admin,
    note,
    double_pledge,
    now,
    typed_error,
):
    (batch_a, tree_a, leaves_a), (batch_b, tree_b, leaves_b) = double_pledge
    # an attested but unpledged batch holding SN-A
    leaves_c = make_leaves(["SN-A"], in_service_at=now)
    batch_c, tree_c = register(registry, operator, issuer, leaves_c)
    registry.attestBatch(batch_c, ATTESTOR_DOCS, {"from": attestor})
    with brownie.reverts(typed_error("BatchNotLive", batch_c)):
        registry.proveDoublePledge(
            batch_a,
            leaves_a[0].as_tuple(),
            tree_a.proof(0),
            batch_c,
            leaves_c[0].as_tuple(),
            tree_c.proof(0),
        )
    with brownie.reverts(typed_error("BatchUnknown", 77)):
        registry.proveDoublePledge(
            batch_a,
            leaves_a[0].as_tuple(),
            tree_a.proof(0),
            77,
            leaves_c[0].as_tuple(),
            tree_c.proof(0),
        )
    # once voided, a batch cannot be voided again
    args = (
        batch_a,
        leaves_a[1].as_tuple(),
        tree_a.proof(1),
        batch_b,
        leaves_b[1].as_tuple(),
        tree_b.proof(1),
    )
    registry.proveDoublePledge(*args)
    with brownie.reverts(typed_error("BatchNotLive", batch_b)):
        registry.proveDoublePledge(*args)
    # a released note's batches are not live
    settle(tranche_stub, admin)
    registry.releaseNote(note, {"from": admin})
    with brownie.reverts(typed_error("BatchNotLive", batch_a)):
        registry.proveDoublePledge(*args)


# ---- proveBadLeaf ----


@pytest.mark.parametrize(
    "field, value, reason",
    [
        ("index", 3, "index out of range"),
        ("model", B200, "model mismatch"),
        ("class_id", 1, "class mismatch"),
        ("in_service_at", -1, "in service before batch"),
    ],
)
def test_prove_bad_leaf(
    registry, operator, attestor, issuer, note, now, rando, field, value, reason
):
    in_service_at = now - HOUR
    leaves = make_leaves(["SN-1", "SN-2", "SN-3"], in_service_at=in_service_at)
    if field == "in_service_at":
        value = in_service_at - 1
    bad = replace(leaves[2], **{field: value})
    tree_leaves = [leaves[0], leaves[1], bad]
    header = {"count": 3, "model": H100, "classId": 0, "inServiceAt": in_service_at}
    batch_id, tree = register_attest_pledge(
        registry, operator, attestor, issuer, note, tree_leaves, **header
    )
    tx = registry.proveBadLeaf(batch_id, bad.as_tuple(), tree.proof(2), {"from": rando})
    assert fields(tx, "BatchVoided") == {
        "batchId": batch_id,
        "noteId": note,
        "gpuKey": bad.gpu_key,
        "reason": reason,
    }
    assert fields(tx, "NoteDefectProven") == {"noteId": note, "batchId": batch_id, "defects": 1}
    assert registry.batchInfo(batch_id)["status"] == VOIDED
    assert registry.collateralValue(note) == 0
    assert registry.noteInfo(note)["defects"] == 1


def test_prove_bad_leaf_errors(registry, pledged, operator, issuer, now, typed_error):
    batch_id, tree, leaves = pledged
    # a consistent leaf
    with brownie.reverts(typed_error("LeafConsistent", batch_id)):
        registry.proveBadLeaf(batch_id, leaves[2].as_tuple(), tree.proof(2))
    # a forged leaf that is not in the tree
    forged = replace(leaves[2], index=99)
    with brownie.reverts(typed_error("ProofInvalid", batch_id, forged.gpu_key)):
        registry.proveBadLeaf(batch_id, forged.as_tuple(), tree.proof(2))
    # a batch that is not live
    idle, idle_tree = register(registry, operator, issuer, leaves)
    with brownie.reverts(typed_error("BatchNotLive", idle)):
        registry.proveBadLeaf(idle, leaves[0].as_tuple(), idle_tree.proof(0))
    with brownie.reverts(typed_error("BatchUnknown", 50)):
        registry.proveBadLeaf(50, leaves[0].as_tuple(), idle_tree.proof(0))


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

    # a new generation ships: 25 % obsolescence haircut on the model
    tx = registry.setModelHaircut(H100, 2_500, {"from": admin})
    assert fields(tx, "ModelHaircutSet") == {"model": H100, "haircutBps": 2_500}
    assert registry.modelHaircutBps(H100) == 2_500
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
    leaves = make_leaves(["SN-1"], in_service_at=now - 10 * QUARTER - HOUR, class_id=1)
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
    registry.setModelHaircut(H100, 10_000, {"from": admin})
    assert registry.batchValue(batch_id) == 0


def test_collateral_value_counts_live_batches_only(registry, operator, attestor, issuer, note, now):
    in_service = now - 4 * QUARTER - HOUR
    classes = [0, 1, 2]
    batch_ids = []
    for class_id in classes:
        leaves = make_leaves(
            [f"SN-{class_id}-{i}" for i in range(4)], in_service_at=in_service, class_id=class_id
        )
        batch_id, _ = register_attest_pledge(registry, operator, attestor, issuer, note, leaves)
        batch_ids.append(batch_id)
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
        registry.setModelHaircut(H100, 10_001, {"from": admin})
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
            registry.setModelHaircut(H100, 100, {"from": account})
    registry.grantRole(role, rando, {"from": admin})
    registry.setModelHaircut(H100, 100, {"from": rando})
    registry.setDepreciationClass(4, 100, 0, {"from": rando})
    assert registry.modelHaircutBps(H100) == 100


def test_new_class_can_be_used_for_batches(registry, admin, operator, issuer, now):
    registry.setDepreciationClass(7, 250, 1_000, {"from": admin})
    leaves = make_leaves(["SN-1"], in_service_at=now - 4 * QUARTER - HOUR, class_id=7)
    batch_id, _ = register(registry, operator, issuer, leaves)
    assert registry.batchValue(batch_id) == value_of(GPU_COST, 9_000)


# ---- leaves and proofs ----


def test_leaf_hash_matches_python(registry):
    leaves = [
        GpuLeaf(0, bytes(32), bytes(32), bytes(32), bytes(32), 0, 0, 0),
        GpuLeaf(
            2**32 - 1,
            b"\xff" * 32,
            b"\xfe" * 32,
            b"\xfd" * 32,
            b"\xfc" * 32,
            2**128 - 1,
            2**40 - 1,
            255,
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


def test_merkle_tree_is_order_independent_and_fast():
    leaves = make_leaves([f"SN{i:05d}" for i in range(10_000)], in_service_at=1_700_000_000)
    start = time.perf_counter()
    tree = MerkleTree(leaves)
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0
    assert MerkleTree(list(reversed(leaves))).root == tree.root
    for i in (0, 4_999, 9_999):
        assert verify_proof(tree.proof(i), tree.root, tree.leaf_hashes[i])
    single = MerkleTree(leaves[:1])
    assert single.root == leaf_hash(leaves[0]) and single.proof(0) == []
    with pytest.raises(ValueError):
        MerkleTree([])
    with pytest.raises(ValueError):
        GpuLeaf(2**32, bytes(32), bytes(32), bytes(32), bytes(32), 0, 0, 0).encode()
    with pytest.raises(ValueError):
        GpuLeaf(0, bytes(31), bytes(32), bytes(32), bytes(32), 0, 0, 0).encode()


# ---- gas at fleet scale ----


def test_ten_thousand_gpu_batch_costs_under_2000_gas_per_gpu(
    registry,
    operator,
    other_operator,
    attestor,
    issuer,
    other_issuer,
    note,
    other_note,
    now,
    rando,
):
    leaves = make_leaves([f"1652221{i:06d}" for i in range(10_000)], in_service_at=now - HOUR)
    reg, tree = registration(issuer, leaves)
    register_tx = registry.registerBatch(reg, {"from": operator})
    batch_id = register_tx.events["BatchRegistered"]["batchId"]
    attest_tx = registry.attestBatch(batch_id, ATTESTOR_DOCS, {"from": attestor})
    pledge_tx = registry.pledgeBatch(batch_id, note, {"from": operator})
    total = register_tx.gas_used + attest_tx.gas_used + pledge_tx.gas_used
    assert total / 10_000 <= 2_000

    # the same fleet pledged again elsewhere is caught with two 14-deep proofs
    reg, _ = registration(other_issuer, leaves)
    other = registry.registerBatch(reg, {"from": other_operator}).events["BatchRegistered"][
        "batchId"
    ]
    registry.attestBatch(other, ATTESTOR_DOCS, {"from": attestor})
    registry.pledgeBatch(other, other_note, {"from": other_operator})
    proof_tx = registry.proveDoublePledge(
        batch_id,
        leaves[4_321].as_tuple(),
        tree.proof(4_321),
        other,
        leaves[4_321].as_tuple(),
        tree.proof(4_321),
        {"from": rando},
    )
    assert len(tree.proof(4_321)) in (13, 14)
    assert registry.batchInfo(other)["status"] == VOIDED
    print(
        f"\n10,000-GPU batch gas: register {register_tx.gas_used}, attest {attest_tx.gas_used},"
        f" pledge {pledge_tx.gas_used}, total {total} ({total / 10_000:.1f}/GPU);"
        f" proveDoublePledge {proof_tx.gas_used}"
    )
