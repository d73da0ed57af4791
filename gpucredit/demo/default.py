"""The bad year (`make demo STORY=default`): a demand shock meets a lapsed cure.

The same note, lenders, nodes and CLI as the good year (`story.py`), with
gpucredit/story.py's `DEFAULT_STORY`:

1. two strong periods, then a demand shock (50 %): the coupon steps up, the
   LTV limit tightens to 65 %, a collateral top-up is required with a 30-day
   cure period. The operator has no GPUs to add: it does not cure;
2. utilization collapses (30 %); the cure period lapses: a senior lender
   declares the default (`declareDefault`: anyone may, once the deadline has
   passed with the collateral still short);
3. the trustee steps in (`stepIn`): the liens move to it, the reserve and the
   cash collateral are trapped for the wind-down waterfall;
4. the operator walks away: no telemetry, so no quorum; once the heartbeat
   passes the nodes mark the report missed and close the period (a stale
   breach) down the wind-down waterfall (fees, senior interest and principal,
   then junior);
5. the trustee sells the fleet (`FIRE_SALE`) and posts the proceeds
   (`postCashCollateral`), then ends the wind-down (`finishWindDown`): all cash
   pays the wind-down order; the junior tranche, still owed principal, is
   written off (`writeOff`), so the loss is the junior lender's;
6. the trustee releases the liens (`CollateralRegistry.releaseNote`); the
   lenders redeem and claim what was paid; the fee recipient withdraws; every
   unit the servicer and the tranches hold is claimable by a named party.

The trustee's calls have no `gpucredit` command yet: they are sent with the
CLI's own client (`Client.send`, decoded errors), as the good year's release is.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from web3.logs import DISCARD

from gpucredit.cli_common import servicer_status
from gpucredit.demo.display import usd
from gpucredit.demo.processes import (
    DEPLOYER,
    SETTLE_SECONDS,
    TRUSTEE,
    DemoError,
)
from gpucredit.demo.story import Demo
from gpucredit.demo.timeline import Row, read_row
from gpucredit.story import (
    DEFAULT_SHOCK_PERIOD,
    DEFAULT_STORY,
    FIRE_SALE,
    GPUS,
    SUBSCRIPTIONS,
)

SENIOR_LENDER = SUBSCRIPTIONS[0][0]  # declares the default


class DefaultDemo(Demo):
    name = "default"
    story = DEFAULT_STORY
    lying_period = None
    down_period = None
    refinancing_period = None

    def year(self) -> None:
        pending: list[str] = []
        for period, (utilization, _, _) in enumerate(self.story):
            if utilization is None:
                row = self.missed_period(period, pending)
            else:
                row = self.run_period(period, pending)
            self.closed(row)
            pending = []
            required, deadline = self.servicer.functions.topUp().call()
            if period == DEFAULT_SHOCK_PERIOD:
                if not required:
                    raise DemoError(f"period {period}: the shock required no top-up")
                when = datetime.fromtimestamp(deadline, UTC).strftime("%Y-%m-%d %H:%M")
                self.step(
                    f"top-up required: collateral of {usd(required)} by {when} UTC (chain time, "
                    "30-day cure period); the operator has no GPUs to pledge and does not cure"
                )
            elif period == DEFAULT_SHOCK_PERIOD + 1:
                self.default(deadline)
                pending += ["cure lapsed: default declared", "trustee stepped in: liens moved"]

    def report_time(self, period: int, end: int) -> int:
        """The shock period is reported and closed an hour after its end: its top-up's cure
        deadline (30 days after that close) then falls an hour after the next close, so the
        next close never declares the default itself (it would, past the deadline), and the
        lender's `declareDefault` is what declares it."""
        if period == DEFAULT_SHOCK_PERIOD:
            return end + 3_600
        return super().report_time(period, end)

    def status(self) -> str:
        return servicer_status(self.servicer)

    def default(self, deadline: int) -> None:
        """The cure period lapsed: a senior lender declares the default, the trustee
        steps in (the liens move to it; reserve and cash collateral are trapped)."""
        if not deadline:
            raise DemoError("the top-up was cured or never required: nothing to default on")
        if self.status() != "Performing":
            raise DemoError(f"the note is {self.status()} before the default was declared")
        if self.chain.now() > deadline:
            raise DemoError(f"chain time {self.chain.now()} passed the cure deadline {deadline}")
        self.chain.warp_to(deadline + 1)
        lender = self.lender_account(SENIOR_LENDER)
        self.cli(
            "servicer",
            "declare-default",
            str(self.note_id),
            key_env=self.lender_keys[SENIOR_LENDER],
        )
        required, _ = self.servicer.functions.topUp().call()
        value, cash = self.servicer.functions.collateral().call()
        self.step(
            f"cure period lapsed with collateral {usd(value + cash)} short of {usd(required)}: "
            f"lender {lender.address[:8]} declared the default (status {self.status()})"
        )
        trapped_before = self.servicer.functions.trappedCash().call()
        reserve = self.servicer.functions.reserveBalance().call()
        self.cli("trustee", "step-in", str(self.note_id))
        self.step(
            f"trustee {self.accounts[TRUSTEE].address[:8]} stepped in: the liens on "
            f"{self.registry_batches()} GPU batch(es) moved to it; reserve {usd(reserve)} and "
            f"trapped cash {usd(trapped_before)} go down the wind-down waterfall "
            f"(status {self.status()})"
        )

    def registry_batches(self) -> int:
        """The note's live batches (noteInfo: issuer, servicer, status, lienholder,
        defects, batch ids); their lienholder must now be the trustee."""
        info = self.client.core("collateral_registry").functions.noteInfo(self.note_id).call()
        if info[3] != self.accounts[TRUSTEE].address:
            raise DemoError(f"after the step-in the lienholder is {info[3]}, not the trustee")
        return len(info[5])

    def lender_account(self, row: int) -> Any:
        address = self.lenders[row]
        return next(a for a in self.accounts.values() if a.address == address)

    def missed_period(self, period: int, pending_events: list[str]) -> Row:
        """The operator is gone: no telemetry, no revenue. The nodes have nothing to sign;
        once the heartbeat passes the period is stale and they mark it missed and close it."""
        started = time.monotonic()
        end = self.genesis + (period + 1) * self.period_length
        heartbeat = self.oracle.functions.fleet(self.note_id).call()[4]  # FleetConfig.heartbeat
        self.chain.warp_to(end + SETTLE_SECONDS + 1)
        self.step(
            f"period {period}: the operator sends no telemetry; after the {heartbeat // 86_400}-day"
            " heartbeat the nodes mark the report missed"
        )
        self.chain.warp_to(end + heartbeat + 1)
        self.wait_closed(period, end + heartbeat)
        story = self.story[period][2]
        return read_row(
            self.contracts, period, story, list(pending_events), time.monotonic() - started
        )

    def maturity(self) -> None:
        """The wind-down: the trustee sells the fleet, posts the proceeds and ends the
        wind-down; the junior is written off; the trustee releases the liens."""
        trustee = self.accounts[TRUSTEE]
        stablecoin = self.client.core("stablecoin")
        # the buyer pays the trustee for the GPUs (minted: the mock stablecoin)
        self.client.send(
            stablecoin.functions.mint(trustee.address, FIRE_SALE),
            self.accounts[DEPLOYER],
            "the buyer pays for the fleet",
        )
        self.client.send(
            stablecoin.functions.approve(self.servicer.address, FIRE_SALE), trustee, "approve"
        )
        self.client.send(
            self.servicer.functions.postCashCollateral(FIRE_SALE), trustee, "post the sale"
        )
        held = stablecoin.functions.balanceOf(self.servicer.address).call()
        self.step(
            f"trustee sold the {GPUS:,} GPUs for {usd(FIRE_SALE)} and posted the "
            f"proceeds: the servicer holds {usd(held)} for the wind-down"
        )
        ended = self.cli("trustee", "finish-wind-down", str(self.note_id))
        receipt = self.client.w3.eth.get_transaction_receipt(ended["tx"])
        wound = self.servicer.events.WoundUp().process_receipt(receipt, errors=DISCARD)[0]["args"]
        written = []
        for symbol, tranche in self.tranches.items():
            for log in tranche.events.WrittenOff().process_receipt(receipt, errors=DISCARD):
                if log["address"] != tranche.address:  # the same event of the other tranche
                    continue
                written.append(
                    {
                        "tranche": symbol,
                        "principal_lost": log["args"]["principalLost"],
                        "interest_lost": log["args"]["interestLost"],
                    }
                )
        self.summary["wind_down"] = {key: int(value) for key, value in wound.items()}
        self.summary["written_off"] = written
        losses = "; ".join(
            f"{w['tranche']} written off: principal {usd(w['principal_lost'])} lost"
            for w in written
        )
        self.step(
            f"trustee finished the wind-down: {usd(wound['cashIn'])} paid fees "
            f"{usd(wound['fees'])}, senior {usd(wound['seniorInterest'])} interest + "
            f"{usd(wound['seniorPrincipal'])} principal, junior {usd(wound['juniorInterest'])} "
            f"+ {usd(wound['juniorPrincipal'])}, operator {usd(wound['residual'])}; {losses}"
        )
        registry = self.client.core("collateral_registry")
        self.client.send(registry.functions.releaseNote(self.note_id), trustee, "release liens")
        self.step("trustee released the liens (CollateralRegistry.releaseNote)")
        self.settle_up()
        status = self.cli("issuer", "status", str(self.note_id))
        self.summary["tranches"] = {t["symbol"]: t["state"] for t in status["tranches"]}
        self.summary["collateral_status"] = status["collateral_status"]
        self.summary["servicer_status"] = self.status()
        self.step(
            "lenders redeemed and claimed what the wind-down paid "
            f"({', '.join(f'{s} {state}' for s, state in self.summary['tranches'].items())}, "
            f"collateral {status['collateral_status']})"
        )
