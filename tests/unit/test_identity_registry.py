"""IdentityRegistry: the KYC whitelist every note holder must be on."""

import brownie
import pytest
from eth_utils import keccak

YEAR = 365 * 24 * 3600
FRANCE = 250
GERMANY = 276


@pytest.fixture(scope="module")
def agent(accounts, identity_registry, admin):
    """A KYC agent that is not the admin."""
    identity_registry.grantRole(identity_registry.AGENT_ROLE(), accounts[8], {"from": admin})
    return accounts[8]


@pytest.fixture(scope="module")
def lender(accounts):
    return accounts[4]


@pytest.fixture(scope="module")
def lender2(accounts):
    return accounts[5]


@pytest.fixture
def expiry(chain):
    return chain[-1].timestamp + YEAR


@pytest.fixture
def listed(identity_registry, agent, lender, expiry):
    """`lender` is listed for a year."""
    identity_registry.registerIdentity(lender, FRANCE, expiry, {"from": agent})
    return lender


def unauthorized(typed_error, account, role):
    return typed_error("AccessControlUnauthorizedAccount", account, role)


# ---- deployment ----


def test_constructor_grants_admin_and_agent(identity_registry, admin, rando):
    agent_role = identity_registry.AGENT_ROLE()
    assert bytes(agent_role) == keccak(text="AGENT_ROLE")
    assert identity_registry.hasRole(identity_registry.DEFAULT_ADMIN_ROLE(), admin)
    assert identity_registry.hasRole(agent_role, admin)
    assert not identity_registry.hasRole(agent_role, rando)


def test_constructor_rejects_zero_admin(IdentityRegistry, admin, typed_error):
    with brownie.reverts(typed_error("IdentityZeroAddress")):
        IdentityRegistry.deploy(brownie.ZERO_ADDRESS, {"from": admin})


def test_admin_agent_can_register(identity_registry, admin, lender, expiry):
    identity_registry.registerIdentity(lender, FRANCE, expiry, {"from": admin})
    assert identity_registry.isVerified(lender)


def test_revoked_agent_cannot_register(
    identity_registry, admin, agent, lender, expiry, typed_error
):
    identity_registry.revokeRole(identity_registry.AGENT_ROLE(), agent, {"from": admin})
    with brownie.reverts(unauthorized(typed_error, agent, identity_registry.AGENT_ROLE())):
        identity_registry.registerIdentity(lender, FRANCE, expiry, {"from": agent})


# ---- registerIdentity ----


def test_register_identity(identity_registry, agent, lender, expiry):
    tx = identity_registry.registerIdentity(lender, FRANCE, expiry, {"from": agent})
    assert tx.events["IdentityRegistered"] == {
        "account": lender,
        "country": FRANCE,
        "expiresAt": expiry,
    }
    assert tuple(identity_registry.identityOf(lender)) == (FRANCE, expiry, False)
    assert identity_registry.isVerified(lender)
    identity_registry.requireVerified(lender)


def test_renewal_updates_country_and_expiry(identity_registry, agent, listed, expiry):
    tx = identity_registry.registerIdentity(listed, GERMANY, expiry + YEAR, {"from": agent})
    assert tx.events["IdentityRegistered"]["expiresAt"] == expiry + YEAR
    assert tuple(identity_registry.identityOf(listed)) == (GERMANY, expiry + YEAR, False)


def test_renewal_keeps_identity_frozen(identity_registry, agent, listed, expiry):
    identity_registry.setFrozen(listed, True, {"from": agent})
    identity_registry.registerIdentity(listed, FRANCE, expiry + YEAR, {"from": agent})
    assert tuple(identity_registry.identityOf(listed)) == (FRANCE, expiry + YEAR, True)
    assert not identity_registry.isVerified(listed)


def test_register_identity_rejects_zero_address(identity_registry, agent, expiry, typed_error):
    with brownie.reverts(typed_error("IdentityZeroAddress")):
        identity_registry.registerIdentity(brownie.ZERO_ADDRESS, FRANCE, expiry, {"from": agent})


def test_register_identity_rejects_past_expiry(
    identity_registry, agent, lender, chain, typed_error
):
    past = chain[-1].timestamp - 1
    with brownie.reverts(typed_error("IdentityExpiryInPast", lender, past)):
        identity_registry.registerIdentity(lender, FRANCE, past, {"from": agent})


def test_register_identity_rejects_zero_expiry(identity_registry, agent, lender, typed_error):
    with brownie.reverts(typed_error("IdentityExpiryInPast", lender, 0)):
        identity_registry.registerIdentity(lender, FRANCE, 0, {"from": agent})


def test_register_identity_is_agent_only(identity_registry, rando, lender, expiry, typed_error):
    with brownie.reverts(unauthorized(typed_error, rando, identity_registry.AGENT_ROLE())):
        identity_registry.registerIdentity(lender, FRANCE, expiry, {"from": rando})


# ---- registerIdentities ----


def test_register_identities(identity_registry, agent, lender, lender2, expiry):
    tx = identity_registry.registerIdentities([lender, lender2], GERMANY, expiry, {"from": agent})
    assert [event["account"] for event in tx.events["IdentityRegistered"]] == [lender, lender2]
    for account in (lender, lender2):
        assert tuple(identity_registry.identityOf(account)) == (GERMANY, expiry, False)
        assert identity_registry.isVerified(account)


def test_register_identities_empty_list_is_a_no_op(identity_registry, agent, expiry):
    tx = identity_registry.registerIdentities([], GERMANY, expiry, {"from": agent})
    assert "IdentityRegistered" not in tx.events


def test_register_identities_rejects_zero_address(
    identity_registry, agent, lender, expiry, typed_error
):
    with brownie.reverts(typed_error("IdentityZeroAddress")):
        identity_registry.registerIdentities(
            [lender, brownie.ZERO_ADDRESS], GERMANY, expiry, {"from": agent}
        )
    assert not identity_registry.isVerified(lender)


def test_register_identities_rejects_past_expiry(identity_registry, agent, lender, typed_error):
    with brownie.reverts(typed_error("IdentityExpiryInPast", lender, 1)):
        identity_registry.registerIdentities([lender], GERMANY, 1, {"from": agent})


def test_register_identities_is_agent_only(identity_registry, rando, lender, expiry, typed_error):
    with brownie.reverts(unauthorized(typed_error, rando, identity_registry.AGENT_ROLE())):
        identity_registry.registerIdentities([lender], GERMANY, expiry, {"from": rando})


# ---- removeIdentity ----


def test_remove_identity(identity_registry, agent, listed):
    tx = identity_registry.removeIdentity(listed, {"from": agent})
    assert tx.events["IdentityRemoved"] == {"account": listed}
    assert tuple(identity_registry.identityOf(listed)) == (0, 0, False)
    assert not identity_registry.isVerified(listed)


def test_remove_then_register_again_stays_frozen(
    identity_registry, agent, listed, expiry, typed_error
):
    """Issue 13: removing and re-registering must not launder a freeze."""
    identity_registry.setFrozen(listed, True, {"from": agent})
    identity_registry.removeIdentity(listed, {"from": agent})
    assert tuple(identity_registry.identityOf(listed)) == (0, 0, True)
    identity_registry.registerIdentity(listed, FRANCE, expiry, {"from": agent})
    assert not identity_registry.isVerified(listed)
    with brownie.reverts(typed_error("IdentityIsFrozen", listed)):
        identity_registry.requireVerified(listed)
    identity_registry.setFrozen(listed, False, {"from": agent})  # only an explicit unfreeze
    assert identity_registry.isVerified(listed)


def test_remove_identity_rejects_unknown(identity_registry, agent, lender, typed_error):
    with brownie.reverts(typed_error("IdentityUnknown", lender)):
        identity_registry.removeIdentity(lender, {"from": agent})


def test_remove_identity_is_agent_only(identity_registry, rando, listed, typed_error):
    with brownie.reverts(unauthorized(typed_error, rando, identity_registry.AGENT_ROLE())):
        identity_registry.removeIdentity(listed, {"from": rando})


# ---- setFrozen ----


def test_freeze_and_unfreeze(identity_registry, agent, listed, expiry):
    tx = identity_registry.setFrozen(listed, True, {"from": agent})
    assert tx.events["IdentityFrozen"] == {"account": listed, "frozen": True}
    assert tuple(identity_registry.identityOf(listed)) == (FRANCE, expiry, True)
    assert not identity_registry.isVerified(listed)

    tx = identity_registry.setFrozen(listed, False, {"from": agent})
    assert tx.events["IdentityFrozen"] == {"account": listed, "frozen": False}
    assert identity_registry.isVerified(listed)


def test_set_frozen_applies_to_an_unlisted_account(identity_registry, agent, lender, expiry):
    identity_registry.setFrozen(lender, True, {"from": agent})
    identity_registry.registerIdentity(lender, FRANCE, expiry, {"from": agent})
    assert not identity_registry.isVerified(lender)


def test_require_not_frozen_ignores_expiry_and_removal(
    identity_registry, agent, listed, lender, typed_error
):
    identity_registry.requireNotFrozen(lender)  # never listed
    identity_registry.removeIdentity(listed, {"from": agent})
    identity_registry.requireNotFrozen(listed)  # removed, not frozen
    identity_registry.setFrozen(listed, True, {"from": agent})
    with brownie.reverts(typed_error("IdentityIsFrozen", listed)):
        identity_registry.requireNotFrozen(listed)


def test_set_frozen_is_agent_only(identity_registry, rando, listed, typed_error):
    with brownie.reverts(unauthorized(typed_error, rando, identity_registry.AGENT_ROLE())):
        identity_registry.setFrozen(listed, True, {"from": rando})


# ---- isVerified / requireVerified ----


def test_unknown_identity_is_not_verified(identity_registry, rando, typed_error):
    assert not identity_registry.isVerified(rando)
    assert tuple(identity_registry.identityOf(rando)) == (0, 0, False)
    with brownie.reverts(typed_error("IdentityUnknown", rando)):
        identity_registry.requireVerified(rando)


def test_identity_expires_at_its_expiry(identity_registry, agent, lender, chain, typed_error):
    expires_at = chain[-1].timestamp + 1000
    identity_registry.registerIdentity(lender, FRANCE, expires_at, {"from": agent})
    chain.sleep(expires_at - chain[-1].timestamp - 10)
    chain.mine()
    assert chain[-1].timestamp < expires_at
    assert identity_registry.isVerified(lender)
    identity_registry.requireVerified(lender)

    chain.sleep(expires_at - chain[-1].timestamp)
    chain.mine()
    assert chain[-1].timestamp >= expires_at
    assert not identity_registry.isVerified(lender)
    with brownie.reverts(typed_error("IdentityExpired", lender, expires_at)):
        identity_registry.requireVerified(lender)


def test_frozen_identity_fails_verification(identity_registry, agent, listed, typed_error):
    identity_registry.setFrozen(listed, True, {"from": agent})
    with brownie.reverts(typed_error("IdentityIsFrozen", listed)):
        identity_registry.requireVerified(listed)


def test_frozen_and_expired_reports_the_freeze(
    identity_registry, agent, listed, expiry, chain, typed_error
):
    identity_registry.setFrozen(listed, True, {"from": agent})
    chain.sleep(expiry - chain[-1].timestamp + 1)
    chain.mine()
    with brownie.reverts(typed_error("IdentityIsFrozen", listed)):
        identity_registry.requireVerified(listed)


def test_require_verified_reads_one_slot(identity_registry, listed):
    """Tranches call it on every transfer: one cold SLOAD plus call overhead."""
    gas = identity_registry.requireVerified.estimate_gas(listed)
    assert gas - 21_000 < 5_000
