"""Issue 13 ("also found by reading"): queued timelocked changes never expired.

On main (856d88c) a change queued on any of the four timelocks (a model, a
depreciation class, a fleet's signer set, a fleet's operator key) could be
executed at any later time: an admin queues a value-raising change, lets it
be forgotten, and applies it a year later when nobody watches the queue any
more. Every queued change now expires: it is executable only in
[eta, eta + GRACE_PERIOD] (7 days); later, execute reverts with the
`...Expired` error carrying eta, the deadline and now, and the change has to
be queued again, in public, for another full delay.

Each test is the attacker-admin's move; on main each late execute succeeded.
"""

import re

import brownie
import pytest
from brownie import chain, web3
from eth_utils import keccak

from gpucredit.merkle import text_id
from gpucredit.protocol import mine_at

DAY = 86_400
DELAY = 2 * DAY  # VALUATION_CHANGE_DELAY == SIGNER_CHANGE_DELAY
GRACE_PERIOD = 7 * DAY
PERIOD = 30 * DAY
HEARTBEAT = 3 * DAY
FLEET = 7
H100 = text_id("NVIDIA H100 SXM5 80GB")
NEW_MODEL = text_id("NVIDIA GB300 NVL72")


@pytest.fixture(autouse=True)
def isolation(fn_isolation):
    pass


@pytest.fixture(scope="module")
def attacker(accounts):
    """Holds every admin role: the registry's valuation role, the fleet admin."""
    return accounts[0]


@pytest.fixture(scope="module")
def registry(CollateralRegistry, attacker):
    return CollateralRegistry.deploy(attacker, {"from": attacker})


@pytest.fixture(scope="module")
def members(accounts):
    return [accounts.add(keccak(text=f"issue 13 expiry signer {i}")) for i in range(8)]


@pytest.fixture(scope="module")
def oracle(TelemetryOracle, attacker, members):
    o = TelemetryOracle.deploy(attacker, {"from": attacker})
    genesis = web3.eth.get_block("latest").timestamp - PERIOD - 3_600
    signer_set = [m.address for m in members[:4]]
    o.registerFleet(
        FLEET, attacker, attacker, genesis, PERIOD, HEARTBEAT, signer_set, 3, {"from": attacker}
    )
    return o


def _new_signers(members):
    return [m.address for m in members[4:]]


# Each queue: (queue, execute, applied, reads the pending eta).
def _model(registry, oracle, members, attacker):
    return (
        lambda: registry.setModel(NEW_MODEL, 1, 0, {"from": attacker}),
        lambda: registry.executeModel(NEW_MODEL, {"from": attacker}),
        lambda: registry.modelInfo(NEW_MODEL)["exists"],
        lambda: registry.pendingModel(NEW_MODEL)[2],
    )


def _depreciation_class(registry, oracle, members, attacker):
    # Class 1 marks H100s down 5 %/quarter; 1 %/quarter raises their value.
    return (
        lambda: registry.setDepreciationClass(1, 100, 0, {"from": attacker}),
        lambda: registry.executeDepreciationClass(1, {"from": attacker}),
        lambda: registry.depreciationClass(1)["quarterlyMarkdownBps"] == 100,
        lambda: registry.pendingDepreciationClass(1)[2],
    )


def _signer_set(registry, oracle, members, attacker):
    return (
        lambda: oracle.queueSignerChange(FLEET, _new_signers(members), 3, {"from": attacker}),
        lambda: oracle.executeSignerChange(FLEET, {"from": attacker}),
        lambda: list(oracle.signers(FLEET)) == _new_signers(members),
        lambda: oracle.pendingSignerChange(FLEET)[2],
    )


def _operator_key(registry, oracle, members, attacker):
    return (
        lambda: oracle.queueOperatorChange(FLEET, members[7], {"from": attacker}),
        lambda: oracle.executeOperatorChange(FLEET, {"from": attacker}),
        lambda: oracle.fleet(FLEET)["operator"] == members[7],
        lambda: oracle.pendingOperatorChange(FLEET)[1],
    )


QUEUES = {
    "model": (_model, "ValuationChangeExpired", False),
    "depreciation_class": (_depreciation_class, "ValuationChangeExpired", False),
    "signer_set": (_signer_set, "SignerChangeExpired", True),
    "operator_key": (_operator_key, "OperatorChangeExpired", True),
}


@pytest.fixture(params=list(QUEUES))
def queue(request, registry, oracle, members, attacker):
    build, error, per_fleet = QUEUES[request.param]
    return (*build(registry, oracle, members, attacker), error, per_fleet)


def _sleep_until(ts):
    """Mine a block stamped `ts` (the next one is later); sleeping by brownie's chain.time()
    left an expired queue unexpired under load ('Transaction did not revert')."""
    if chain[-1].timestamp < ts:
        mine_at(ts)


def test_late_execution_reverts_with_the_deadline(queue, reverts_with):
    do_queue, execute, applied, pending_eta, error, per_fleet = queue
    do_queue()
    eta = pending_eta()
    deadline = eta + GRACE_PERIOD
    _sleep_until(deadline + 1)  # the next block is at least one second past the deadline

    fleet = [str(FLEET)] if per_fleet else []
    with pytest.raises(brownie.exceptions.VirtualMachineError) as revert:
        execute()
    # The custom error carries eta, the deadline and the block's time.
    expected = rf"{error}: {', '.join([*fleet, str(eta), str(deadline)])}, (\d+)"
    match = re.fullmatch(expected, revert.value.revert_msg or "")
    assert match, (expected, revert.value.revert_msg)
    assert int(match[1]) > deadline
    assert not applied()


def test_execution_inside_the_window_still_applies(queue):
    do_queue, execute, applied, pending_eta, _error, _per_fleet = queue
    do_queue()
    # A few seconds before the last second of the window.
    _sleep_until(pending_eta() + GRACE_PERIOD - 30)
    execute()
    assert applied()
    assert pending_eta() == 0


def test_requeue_after_expiry_waits_a_full_delay_again(queue, reverts_with):
    do_queue, execute, applied, pending_eta, error, _per_fleet = queue
    do_queue()
    _sleep_until(pending_eta() + GRACE_PERIOD + 1)
    with reverts_with(error):
        execute()

    tx = do_queue()
    eta = pending_eta()
    assert eta == tx.timestamp + DELAY
    with reverts_with(error.replace("Expired", "NotReady")):
        execute()
    _sleep_until(eta)
    execute()
    assert applied()


def test_grace_period_is_a_public_seven_days(registry, oracle):
    assert registry.GRACE_PERIOD() == oracle.GRACE_PERIOD() == GRACE_PERIOD
