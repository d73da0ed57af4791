"""Root of the test suite.

Contract tests (unit/, integration/, stateful/) run under brownie's pytest
plugin, which starts anvil itself; `pytest_configure` first points it at a
free port, so a busy 8545 never makes the suite attach to a chain it did not
start. Service tests (service/) run with the plugin disabled and use none of
the fixtures below.

Accounts are named for their role; `core` deploys the shared contracts once
per module.
"""

import re

import pytest

from gpucredit.localchain import use_free_port_for_development

# Oracle signer keys are fixed so Python can sign observations for them.
SIGNER_KEYS = [f"0x{(0xA11CE + i):064x}" for i in range(5)]


def pytest_configure(config):
    if config.pluginmanager.has_plugin("pytest-brownie"):
        use_free_port_for_development()


@pytest.fixture(scope="session", autouse=True)
def _local_node_session(request):
    """Brownie's requests to the local node skip requests' proxy and .netrc
    look-ups, which otherwise cost about a millisecond per JSON-RPC call, and
    its confirmation thread no longer mistakes a slow receipt for a dropped
    transaction (tests/brownie_patches.py)."""
    if request.config.pluginmanager.has_plugin("pytest-brownie"):
        from brownie_patches import skip_proxy_lookups, tolerate_receipt_race

        skip_proxy_lookups()
        tolerate_receipt_race()


@pytest.fixture(scope="session")
def reverts_with():
    """`with reverts_with("ErrorName", arg, ...):` matches a custom error.

    Brownie renders a decoded custom error as `Name: arg1, arg2`; with no
    args given only the name is matched.
    """
    import brownie

    def _reverts(name, *args):
        if not args:
            return brownie.reverts(revert_pattern=rf"{re.escape(name)}(:.*)?")
        rendered = ", ".join(str(a) for a in args)
        return brownie.reverts(revert_pattern=rf"{re.escape(name)}: (?i:{re.escape(rendered)})")

    return _reverts


@pytest.fixture(scope="session")
def admin(accounts):
    return accounts[0]


@pytest.fixture(scope="session")
def issuer(accounts):
    return accounts[1]


@pytest.fixture(scope="session")
def operator(accounts):
    return accounts[2]


@pytest.fixture(scope="session")
def attestor(accounts):
    return accounts[3]


@pytest.fixture(scope="session")
def trustee(accounts):
    return accounts[4]


@pytest.fixture(scope="session")
def lenders(accounts):
    return [accounts[5], accounts[6], accounts[7]]


@pytest.fixture(scope="session")
def spv(accounts):
    """An SPV wallet (tranche unit tests) or the fee recipient (deal tests)."""
    return accounts[8]


@pytest.fixture(scope="session")
def rando(accounts):
    return accounts[9]


@pytest.fixture(scope="session")
def signers(accounts):
    """Five oracle signers with known private keys, in key order."""
    return [accounts.add(key) for key in SIGNER_KEYS]


@pytest.fixture(scope="session")
def signer_keys():
    return list(SIGNER_KEYS)


@pytest.fixture(scope="module")
def core(admin, issuer, operator, attestor, lenders, spv):
    """Stablecoin, identity and collateral registries and oracle, with roles,
    whitelisted lenders and funded accounts."""
    from gpucredit.protocol import USD, deploy_core, grant_roles, whitelist

    core = deploy_core(admin)
    grant_roles(core, admin, issuer, operator, attestor)
    whitelist(core, admin, lenders)
    for account in [*lenders, operator, spv]:
        core.usd.mint(account, 100_000_000 * USD, {"from": admin})
    return core
