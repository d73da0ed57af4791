"""Fixtures shared by the unit tests: role-named accounts, fresh deployments.

Accounts are named for the role they play; deployments are module-scoped and
every test runs in its own snapshot (`fn_isolation`), so tests never see each
other's state.
"""

import pytest


def _brownie_arg(value: object) -> str:
    """One custom-error argument as brownie prints it in `revert_msg`."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, bytes | bytearray):
        return str(bytes(value))
    if hasattr(value, "address"):
        return value.address.lower()
    if isinstance(value, str) and value.startswith("0x"):
        if len(value) == 42:
            return value.lower()
        return str(bytes.fromhex(value[2:]))
    return str(value)


def _typed_error(name: str, *args: object) -> str:
    # brownie keeps the ": " even when the error has no arguments
    return f"{name}: {', '.join(_brownie_arg(arg) for arg in args)}"


def _plain(value: object) -> object:
    """Brownie return values as plain Python: tuples, ints, bools, str
    addresses, bytes (brownie's compiled ReturnValue cannot compare itself
    with plain ints or bytes)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, tuple | list):
        return tuple(_plain(item) for item in value)
    return value


@pytest.fixture(scope="session")
def plain():
    """`plain(contract.view())`: a return value as plain Python values."""
    return _plain


@pytest.fixture(scope="session")
def typed_error():
    """`typed_error("NoteUnknown", 7)` is the revert message brownie decodes
    from the custom error `NoteUnknown(7)`; use it with `brownie.reverts`.
    Accounts and contracts stand for their address, bytes for bytes32."""
    return _typed_error


@pytest.fixture(autouse=True)
def isolation(fn_isolation):
    """Reverts the chain to the module's snapshot after every test."""


@pytest.fixture(scope="module")
def admin(accounts):
    """Deployer: holds DEFAULT_ADMIN_ROLE (and the agent / valuation roles)."""
    return accounts[0]


@pytest.fixture(scope="module")
def issuer(accounts):
    """SPV issuer: opens notes."""
    return accounts[1]


@pytest.fixture(scope="module")
def operator(accounts):
    """Fleet operator: registers and pledges batches of GPUs."""
    return accounts[2]


@pytest.fixture(scope="module")
def attestor(accounts):
    """Checks that a batch's GPUs exist and attests the batch."""
    return accounts[3]


@pytest.fixture(scope="module")
def rando(accounts):
    """An account with no role at all."""
    return accounts[9]


@pytest.fixture(scope="module")
def identity_registry(IdentityRegistry, admin):
    """An identity registry whose admin is also the KYC agent."""
    return IdentityRegistry.deploy(admin, {"from": admin})


@pytest.fixture(scope="module")
def collateral_registry(CollateralRegistry, admin, issuer, operator, attestor):
    """A collateral registry with one issuer, one operator and one attestor."""
    registry = CollateralRegistry.deploy(admin, {"from": admin})
    registry.grantRole(registry.ISSUER_ROLE(), issuer, {"from": admin})
    registry.grantRole(registry.OPERATOR_ROLE(), operator, {"from": admin})
    registry.grantRole(registry.ATTESTOR_ROLE(), attestor, {"from": admin})
    return registry


@pytest.fixture(scope="module")
def clone_maker(CloneMaker, admin):
    """Makes bare clones that a unit test wires by hand."""
    return CloneMaker.deploy({"from": admin})


@pytest.fixture(scope="module")
def make_tranche(NoteTranche, clone_maker, core, admin, issuer):
    """`make_tranche(terms, servicer, name=..., schedule=([], []))`: a NoteTranche
    clone of `core`, initialised with `servicer` (a plain wallet in unit tests)."""
    implementation = NoteTranche.deploy(core.usd, core.identities, core.registry, {"from": admin})

    def _make(terms, servicer, name="GPU Senior", symbol="GPU-A", schedule=([], [])):
        address = clone_maker.clone(implementation, {"from": admin}).events["Cloned"]["instance"]
        tranche = NoteTranche.at(address)
        tx = tranche.initialize(name, symbol, issuer, servicer, terms, *schedule, {"from": admin})
        tranche.init_tx = tx
        return tranche

    return _make


@pytest.fixture(scope="module")
def open_note(core, admin, issuer, operator):
    """`open_note()` opens a note for `issuer`; `open_note.bind(note_id, servicer,
    tranches)` binds it, both as the admin standing in for the factory."""
    registry = core.registry
    role = registry.NOTE_FACTORY_ROLE()
    if not registry.hasRole(role, admin):
        registry.grantRole(role, admin, {"from": admin})

    def _open():
        return registry.openNote(issuer, {"from": admin}).return_value

    def _bind(note_id, servicer, tranches):
        registry.bindNote(note_id, servicer, tranches, [operator], {"from": admin})

    _open.bind = _bind
    return _open
