"""Where every stablecoin unit of the note is: the servicer's balance against what it
owes its named payees, each tranche's balance against what its holders can claim.

Once a note is released (repaid, or wound down), the servicer must hold exactly
what `withdrawable` gives the fee recipient, the operator and the trustee, and
each tranche what `couponClaimable` + `principalClaimable` give its holders,
up to rounding dust (coupons and principal are shared per unit of face,
rounded down: what is left is at most a few units per holder).
"""

from __future__ import annotations

from typing import Any

from gpucredit.demo.processes import DemoError

DUST_PER_HOLDER = 10  # units (1e-6 USD each) of rounding a tranche may keep per holder


def count(
    stablecoin: Any,
    servicer: Any,
    tranches: dict[str, Any],
    parties: dict[str, Any],
    holders: list[str],
) -> dict[str, Any]:
    """Balances and claims, in stablecoin units."""
    balance = stablecoin.functions.balanceOf(servicer.address).call()
    owed = {
        role: servicer.functions.withdrawable(account.address).call()
        for role, account in parties.items()
    }
    out: dict[str, Any] = {
        "servicer": {
            "balance": balance,
            "withdrawable": owed,
            "unowned": balance - sum(owed.values()),
        }
    }
    for symbol, tranche in tranches.items():
        held = stablecoin.functions.balanceOf(tranche.address).call()
        claimable = {
            holder: tranche.functions.couponClaimable(holder).call()
            + tranche.functions.principalClaimable(holder).call()
            for holder in holders
        }
        out[symbol] = {
            "balance": held,
            "claimable": claimable,
            "unowned": held - sum(claimable.values()),
        }
    return out


def check_ledger(ledger: dict[str, Any], when: str) -> None:
    """Raises DemoError unless every unit held is owed to a named party (tranches: up to
    rounding dust, never less than is owed)."""
    servicer = ledger["servicer"]
    if servicer["unowned"] != 0:
        raise DemoError(
            f"{when}: the servicer holds {servicer['balance']} units but owes its payees "
            f"{servicer['withdrawable']}: {servicer['unowned']} units belong to no one"
        )
    for symbol, entry in ledger.items():
        if symbol == "servicer":
            continue
        dust = DUST_PER_HOLDER * len(entry["claimable"])
        if not 0 <= entry["unowned"] <= dust:
            raise DemoError(
                f"{when}: tranche {symbol} holds {entry['balance']} units, its holders can claim "
                f"{entry['claimable']}: {entry['unowned']} units unaccounted for (dust allowed "
                f"{dust})"
            )
