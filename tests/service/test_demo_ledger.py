"""The demo's end-of-note check (gpucredit/demo/ledger.py) can fail: a unit the servicer
holds that no payee can withdraw, or a tranche holding more than its holders can claim
(beyond rounding dust) or less than they are owed, stops the demo."""

from __future__ import annotations

import pytest

from gpucredit.demo.ledger import DUST_PER_HOLDER, check_ledger
from gpucredit.demo.processes import DemoError

HOLDERS = {"0xA": 5_000, "0xB": 7_000}


def ledger(servicer_extra: int = 0, tranche_extra: int = 0) -> dict:
    owed = {"fee recipient": 60_000, "operator": 1_000, "trustee": 0}
    held = sum(owed.values()) + servicer_extra
    tranche = sum(HOLDERS.values()) + tranche_extra
    return {
        "servicer": {"balance": held, "withdrawable": owed, "unowned": servicer_extra},
        "GPUS-27": {"balance": tranche, "claimable": HOLDERS, "unowned": tranche_extra},
    }


def test_every_unit_owed_passes():
    check_ledger(ledger(), "at the end")
    check_ledger(ledger(tranche_extra=DUST_PER_HOLDER * len(HOLDERS)), "with dust")


@pytest.mark.parametrize(
    ("servicer_extra", "tranche_extra", "message"),
    [
        (1, 0, "1 units belong to no one"),
        (-1, 0, "-1 units belong to no one"),
        (0, DUST_PER_HOLDER * len(HOLDERS) + 1, "21 units unaccounted for"),
        (0, -1, "-1 units unaccounted for"),
    ],
)
def test_an_unowned_or_missing_unit_stops_the_demo(servicer_extra, tranche_extra, message):
    with pytest.raises(DemoError, match=message):
        check_ledger(ledger(servicer_extra, tranche_extra), "at the end")
