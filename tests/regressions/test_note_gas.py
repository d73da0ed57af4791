"""Issue 14, item 4: the worst realistic case of each holder operation.

An independent client measured `transfer` to a first-time recipient at
103,440 gas and `claimCoupon` right after a principal sweep at 100,603,
against targets of 100,000 (every transfer) and 90,000 (every coupon claim).
On 0751ced the bench's worst cases were 100,580 / 110,383 (transfers) and
108,003 / 153,523 (claims): each holder was four or five storage slots
(balance, checkpoint, coupon owed, principal owed, fill), each settlement
wrote them from both sides, and a claim of face still in escrow settled the
escrow and split what it had earned.

Each test plays the holder in that case, with an empty stablecoin wallet
where the claim pays out (the stablecoin slot written from zero is part of
the worst case), and asserts the receipt against the target. A last test
checks from the attacker's side that the cheaper principal bookkeeping
(`_rebase`: a transfer moves the principal checkpoint instead of writing
what was earned) never pays a holder more than its exact share.
"""

from fractions import Fraction

import pytest
from brownie import chain

from gpucredit.protocol import (
    DAY,
    USD,
    YEAR,
    close_subscription,
    make_fleet,
    register_batch,
    wait_challenge_window,
)

TRANSFER_MAX = 100_000
CLAIM_MAX = 90_000
FACES = (2_000_000 * USD, 3_000_000 * USD, 5_000_000 * USD)
SUPPLY = sum(FACES)


@pytest.fixture(autouse=True)
def isolation(fn_isolation):
    pass


@pytest.fixture(scope="module")
def tranche(NoteTranche, CloneMaker, core, admin, issuer, operator, attestor, spv):
    """A senior tranche wired by hand with a wallet as servicer, on $15M of GPUs."""
    registry = core.registry
    role = registry.NOTE_FACTORY_ROLE()
    if not registry.hasRole(role, admin):
        registry.grantRole(role, admin, {"from": admin})
    note_id = registry.openNote(issuer, {"from": admin}).return_value
    implementation = NoteTranche.deploy(core.usd, core.identities, registry, {"from": admin})
    maker = CloneMaker.deploy({"from": admin})
    clone = maker.clone(implementation, {"from": admin}).events["Cloned"]["instance"]
    tranche = NoteTranche.at(clone)
    now = chain[-1].timestamp
    terms = (note_id, 0, SUPPLY, 1_000 * USD, now, now + 14 * DAY, now + 14 * DAY + 3 * YEAR)
    terms += (430, 450, 500, 2_500, 13_000)
    tranche.initialize("GPU Senior", "GPU-A", issuer, spv, terms, [], [], {"from": admin})
    registry.bindNote(note_id, spv, [tranche], [operator], {"from": admin})
    leaves = make_fleet(600, in_service_at=chain[-1].timestamp - 1)
    batch_id, _, _ = register_batch(core, issuer, operator, leaves)
    attestation = registry.batchInfo(batch_id)["attestationHash"]
    registry.attestBatch(batch_id, attestation, {"from": attestor})
    registry.pledgeBatch(batch_id, note_id, {"from": operator})
    wait_challenge_window()
    return tranche


@pytest.fixture(scope="module")
def active(core, tranche, issuer, lenders, spv):
    """Lenders A, B, C subscribe 2M / 3M / 5M; A and B claim their face a
    day after drawdown, C leaves its face in escrow."""
    for lender, face in zip(lenders, FACES, strict=True):
        core.usd.approve(tranche, face, {"from": lender})
        tranche.requestDeposit(face, lender, lender, {"from": lender})
    close_subscription(tranche, issuer)
    tranche.fulfil(lenders, {"from": issuer})
    tranche.drawdown({"from": issuer})
    core.usd.approve(tranche, 2**256 - 1, {"from": spv})
    chain.sleep(DAY)
    for lender in lenders[:2]:
        tranche.claimShares({"from": lender})
    return tranche


def _pay_everything_due(tranche, spv, principal=0):
    tranche.pay(2**256 - 1, principal, {"from": spv})


def _empty_wallet(core, holder, sink):
    """The claim's stablecoin lands in a slot written from zero."""
    core.usd.transfer(sink, core.usd.balanceOf(holder), {"from": holder})


def _sweep(tranche, spv):
    """Thirty days of coupon paid, then a principal sweep of 1M ten days later."""
    chain.sleep(30 * DAY)
    _pay_everything_due(tranche, spv)
    chain.sleep(10 * DAY)
    _pay_everything_due(tranche, spv, principal=1_000_000 * USD)
    chain.sleep(DAY)


def test_transfer_to_a_first_time_recipient_after_a_sweep(core, active, lenders, admin, rando, spv):
    a = lenders[0]
    _sweep(active, spv)
    core.identities.registerIdentity(rando, 840, chain.time() + YEAR, {"from": admin})
    assert active.balanceOf(rando) == 0
    tx = active.transfer(rando, 1_000 * USD, {"from": a})
    assert tx.gas_used <= TRANSFER_MAX, tx.gas_used


def test_transfer_after_a_sweep_by_a_holder_never_settled(active, lenders, spv):
    """B has not moved since its claimShares: coupon and principal both to settle."""
    a, b, _ = lenders
    _sweep(active, spv)
    tx = active.transfer(a, 1_000 * USD, {"from": b})
    assert tx.gas_used <= TRANSFER_MAX, tx.gas_used


def test_transfer_after_a_rate_step(active, lenders, spv):
    a, b, _ = lenders
    chain.sleep(10 * DAY)
    active.transfer(b, 1_000 * USD, {"from": a})
    chain.sleep(20 * DAY)
    _pay_everything_due(active, spv)
    active.setRateStep(-200, {"from": spv})
    chain.sleep(DAY)
    tx = active.transfer(b, 1_000 * USD, {"from": a})
    assert tx.gas_used <= TRANSFER_MAX, tx.gas_used


def test_claim_coupon_with_face_still_in_escrow(core, active, lenders, rando, spv):
    c = lenders[2]
    chain.sleep(30 * DAY)
    _pay_everything_due(active, spv)
    _empty_wallet(core, c, rando)
    tx = active.claimCoupon({"from": c})
    assert "EscrowedFaceClaimed" in tx.events
    assert tx.gas_used <= CLAIM_MAX, tx.gas_used


def test_claim_coupon_after_a_sweep(core, active, lenders, rando, spv):
    b = lenders[1]
    _sweep(active, spv)
    _empty_wallet(core, b, rando)
    tx = active.claimCoupon({"from": b})
    assert tx.gas_used <= CLAIM_MAX, tx.gas_used


def test_claim_coupon_after_a_rate_step(core, active, lenders, rando, spv):
    a = lenders[0]
    chain.sleep(30 * DAY)
    _pay_everything_due(active, spv)
    active.setRateStep(300, {"from": spv})
    chain.sleep(DAY)
    _empty_wallet(core, a, rando)
    tx = active.claimCoupon({"from": a})
    assert tx.gas_used <= CLAIM_MAX, tx.gas_used


def test_moving_face_after_a_sweep_never_pays_more_principal(active, lenders, spv):
    """Splits, round trips and near-total sends after a sweep: each holder
    redeems at most its exact share of the principal paid, short of it by
    less than a unit per transfer it took part in."""
    a, b, c = lenders
    swept = 1_000_000 * USD + 7  # an amount that does not divide evenly
    chain.sleep(10 * DAY)
    _pay_everything_due(active, spv, principal=swept)
    face = {a: FACES[0], b: FACES[1], c: FACES[2]}
    exact = {h: Fraction(face[h] * swept, SUPPLY) for h in lenders}
    moves = {h: 0 for h in lenders}
    # small transfers back and forth: the checkpoints move, nothing is credited
    for i in range(6):
        sender, receiver = (a, b) if i % 2 == 0 else (b, a)
        active.transfer(receiver, 1 + i * 333_333, {"from": sender})
        moves[sender] += 1
        moves[receiver] += 1
    # a near-total send (the checkpoint would leave int56: credited instead),
    # then a total send
    active.transfer(b, active.balanceOf(a) - 1_000, {"from": a})
    active.transfer(b, 1_000, {"from": a})
    moves[a] += 2
    moves[b] += 2
    paid = {}
    for holder in lenders:
        claimable = active.principalClaimable(holder)
        paid[holder] = active.redeem({"from": holder}).return_value
        assert paid[holder] == claimable
        assert paid[holder] <= exact[holder], (holder, paid[holder], exact[holder])
        assert paid[holder] > exact[holder] - 1 - moves[holder]
    assert sum(paid.values()) <= swept
    assert active.balanceOf(a) == 0
    # the principal paid after the face left stays with the new holder
    _pay_everything_due(active, spv, principal=1_000 * USD)
    assert active.principalClaimable(a) == 0
