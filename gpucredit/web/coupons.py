"""A lender's coupons and principal at the last indexed block, from the replayed history.

The tranche pays coupons through two indexes (docs/notes.md): interest accrues
per second into an interest index, and only a payment that covers everything
due moves the funded index up to it. What a holder is owed is therefore state
no event carries (`couponOwed`, `couponClaimable`); it is what the audit model
(`gpucredit.audit.model.Tranche`) computes when the indexed events are replayed
through it (`gpucredit.audit.replay.Replayer`). `holdings` reads it off the
replayed tranches at the timestamp of the last indexed block, with the
contract's own formula: one position per holder whose face includes the filled
face still in escrow (it earns from the drawdown like the rest, docs/notes.md).
tests/index/test_indexer.py (test_lender_coupons_equal_chain_views) compares
the figures with the chain's views at several indexed blocks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gpucredit.audit.model import ACTIVE, PRINCIPAL_SCALE, YEAR, Tranche

STATES = ("subscription", "closed", "active", "repaid", "cancelled", "written off")


@dataclass(frozen=True)
class Holding:
    """One holder in one tranche, base units (6 decimals)."""

    coupons_accrued: int  # couponOwed: accrued and unclaimed, funded or not
    coupons_claimable: int  # couponClaimable: funded and unclaimed
    principal_claimable: int  # repaid and not yet redeemed
    principal_outstanding: int  # the holder's share of the outstanding principal
    rate_bps: int
    state: str  # the tranche's


def _own(t: Tranche, account: str, ts: int) -> tuple[int, int, int, int]:
    """(coupon funded, coupon pending, principal owed, face) of the account's
    position, escrowed face included, as the contract's views compute them
    without settling. The escrow's own balance is the filled face held for
    the holders: it is theirs, not a position."""
    h = t.holders.get(account)
    if h is None or account == t.escrow:
        return 0, 0, 0, 0
    funded, pending = t.entitlement(account, ts)
    principal = h.principal_owed
    if h.face:
        principal += h.face * (t.principal_index - h.ck_principal) // PRINCIPAL_SCALE
    return funded, pending, principal, h.face


def holding(t: Tranche, account: str, ts: int) -> Holding:
    funded, pending, principal, face = _own(t, account.lower(), ts)
    outstanding = face * t.outstanding // t.total_supply if t.total_supply else 0
    return Holding(
        coupons_accrued=funded + pending,
        coupons_claimable=funded,
        principal_claimable=principal,
        principal_outstanding=outstanding,
        rate_bps=t.rate,
        state=STATES[t.state],
    )


def projected_coupons(t: Tranche, h: Holding, ts: int) -> int:
    """Coupons still to accrue to maturity at today's rate on today's outstanding share:
    no scheduled amortisation, rate steps or losses (an upper bound while amortising)."""
    if t.state != ACTIVE or h.principal_outstanding == 0:
        return 0
    remaining = max(0, t.terms.maturity - ts)
    return h.principal_outstanding * h.rate_bps * remaining // (10_000 * YEAR)


def yields(
    invested: int,
    claimed: int,
    redeemed: int,
    h: Holding,
    projected: int,
    first_ts: int | None,
    ts: int,
) -> dict[str, Any]:
    """Realised and projected yield of one position, as fractions (0.05 = 5 %).

    realised: cash received (coupons claimed, principal redeemed) plus what is
    claimable now, less the amount invested, over the amount invested;
    realised_annual: the same per year held (first fill to the indexed block).
    projected: realised plus the coupons accrued and not yet funded, the
    principal still outstanding and the projected coupons, over the invested
    amount: the total return if the tranche pays as it accrues today."""
    if not invested:
        return {"realised": None, "realised_annual": None, "projected": None}
    received = claimed + redeemed + h.coupons_claimable + h.principal_claimable
    realised = (received - invested) / invested
    held_s = ts - first_ts if first_ts is not None else 0
    unfunded = h.coupons_accrued - h.coupons_claimable
    total = received + unfunded + h.principal_outstanding + projected
    return {
        "realised": realised,
        "realised_annual": realised * YEAR / held_s if held_s > 0 else None,
        "projected": (total - invested) / invested,
    }
