"""The demo's year: one story, told three ways.

1,000 H100s ($25M) finance a 14M senior and a 3M junior tranche; three
lenders subscribe (the junior one is asked for 4.5M and cut pro rata); the
oracle reports twelve 30-day periods of (utilization, uptime):

    strong utilization -> the coupon steps down 200 bps;
    a demand shock (< 60 %) -> the coupon steps up 300 bps, a collateral
    top-up is required, cash is swept to senior principal, equity is blocked;
    the operator pledges 250 more GPUs (cure) -> the step is removed;
    maturity -> refinancing repays the principal, lenders redeem and claim.

Four oracle signers, quorum 3 (f = 1). In the first demand-shock period one
signer lies (it signs 95 % utilization and full uptime, which would dodge the
step-up): the lie is submitted with the honest observations and outvoted, the
stored figures are the honest ones. In a recovery period another signer is
down: the other three still make the quorum and the report lands.

`DEFAULT_STORY` is the bad year (`make demo STORY=default`): a demand shock
meets a lapsed cure, default, trustee step-in, a wind-down with a loss to the
junior tranche.

`make demo` (gpucredit/demo/) tells it through the oracle nodes and the
CLI; `scripts/demo.py` and the auditor's replay test play it directly on the
contracts with `play_year` (brownie; needs a loaded project).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

USD = 10**6
GPUS = 1_000
CURE_GPUS = 250
NET_REVENUE_PER_GPU_HOUR = 400_000  # $0.40 after power, colocation and staff (6 decimals)
REFINANCING = 17_500_000 * USD  # paid in at maturity to repay the principal
STORY: list[tuple[int, int, str]] = [  # (utilization bps, uptime bps, what happens)
    (9_200, 9_960, "strong demand"),
    (9_400, 9_970, "strong demand"),
    (9_300, 9_950, "strong demand"),
    (9_100, 9_940, "strong demand"),
    (5_200, 9_910, "demand shock"),
    (5_600, 9_920, "demand shock"),
    (7_800, 9_950, "recovery"),
    (8_500, 9_960, "recovery"),
    (8_800, 9_960, "recovery"),
    (9_200, 9_970, "strong demand"),
    (9_300, 9_980, "strong demand"),
    (9_400, 9_980, "strong demand, maturity"),
]
# The bad year (`make demo STORY=default`): the same note, the same lenders. A demand
# shock meets a lapsed cure: utilization collapses, the top-up required at the shock is
# never cured, default is declared once its 30-day cure period lapses, the trustee steps
# in (the liens move to it), the operator walks away (no telemetry: the next period's
# report is missed), the trustee sells the fleet and winds the note down: the wind-down
# waterfall pays senior first, the junior tranche takes the loss, the liens are released.
# A None utilization: no telemetry at all that period (the report is missed).
DEFAULT_STORY: list[tuple[int | None, int | None, str]] = [
    (9_200, 9_960, "strong demand"),
    (9_100, 9_950, "strong demand"),
    (5_000, 9_900, "demand shock"),
    (3_000, 9_800, "utilization collapses"),
    (None, None, "operator gone: report missed"),
]
DEFAULT_SHOCK_PERIOD = 2  # the top-up is required at this close and never cured
DEFAULT_MISSED_PERIOD = 4  # no telemetry: the nodes mark the report missed
# What the trustee's sale of the 1,000 GPUs fetches ($25M at pledge): enough for the
# senior tranche's principal and interest, not for the junior's: the junior takes the loss.
FIRE_SALE = 14_600_000 * USD
QUORUM = 3  # 2f + 1 of four signers: one may lie or be down (f = 1)
LYING_SIGNER, LYING_PERIOD = 3, 4  # signer index, period: claims the shock never happened
LIE = (9_500, 10_000)  # utilization, uptime the lying signer signs
DOWN_SIGNER, DOWN_PERIOD = 2, 7  # this signer is down for this period's report
SENIOR_FACE = 14_000_000 * USD
JUNIOR_FACE = 3_000_000 * USD
# (lender number, tranche, amount asked): the junior tranche is cut pro rata
SUBSCRIPTIONS = [
    (0, "senior", 8_000_000 * USD),
    (1, "senior", 6_000_000 * USD),
    (2, "junior", 4_500_000 * USD),
]


def honest_signers(period: int) -> list[int]:
    """Indices of the signers whose honest observation of `period` is submitted."""
    absent = {LYING_SIGNER} if period == LYING_PERIOD else set()
    if period == DOWN_PERIOD:
        absent.add(DOWN_SIGNER)
    return [i for i in range(4) if i not in absent]


def period_revenue(utilization: int) -> int:
    """Net revenue of a 30-day period at `utilization` (6 decimals)."""
    return GPUS * 720 * NET_REVENUE_PER_GPU_HOUR * utilization // 10_000


@dataclass
class Year:
    """What `play_year` deployed and what each lender got."""

    core: Any
    deal: Any
    start_block: int
    batch_id: int = 0
    fleet_root: bytes = b""
    # per subscription: (tranche, lender, asked, shares, refund)
    subscriptions: list[tuple[Any, Any, int, int, int]] = field(default_factory=list)
    # per subscription at maturity: (principal redeemed, coupons claimed)
    payouts: list[tuple[int, int]] = field(default_factory=list)

    def audit_manifest(self, chain_id: int) -> dict[str, Any]:
        """The audit manifest of this deployment (docs/audit.md): what
        `gpucredit audit export` reads to archive the year's events."""
        core, deal = self.core, self.deal
        return {
            "chain_id": chain_id,
            "start_block": self.start_block,
            "contracts": {
                "NoteFactory": core.factory.address,
                "CollateralRegistry": core.registry.address,
                "IdentityRegistry": core.identities.address,
                "TelemetryOracle": core.oracle.address,
                "notes": [
                    {
                        "note_id": deal.note_id,
                        "servicer": deal.servicer.address,
                        "tranches": [t.address for t in deal.tranches],
                    }
                ],
            },
        }


def play_year(
    signer_keys: list[str],
    on_close: Callable[[Any, int, tuple[int, int, str], Any], None] | None = None,
) -> Year:
    """Deploys the protocol and plays the story on it.

    Roles are brownie's accounts 0-5 (admin, issuer, operator, attestor,
    trustee, fee recipient), lenders 6-8, anyone 9; `signer_keys` are the
    four oracle signers (quorum 3, f = 1; see the module notes for the lying
    and the down signer). `on_close(deal, period, story row, tx)` sees every
    period's close before the operator reacts to it.
    """
    from brownie import accounts, chain

    from gpucredit.protocol import (
        DealSpec,
        TrancheSpec,
        close_subscription,
        deploy_core,
        grant_roles,
        make_fleet,
        open_deal,
        pledge_fleet,
        sign_report,
        wait_for_period_end,
        whitelist,
    )

    if len(signer_keys) != 4:
        raise ValueError(f"the story has four oracle signers (quorum 3), got {len(signer_keys)}")

    start_block = chain.height + 1
    admin, issuer, operator, attestor, trustee, fees = accounts[:6]
    lenders = list(accounts[6:9])
    anyone = accounts[9]
    core = deploy_core(admin)
    grant_roles(core, admin, issuer, operator, attestor)
    core.oracle.grantRole(core.oracle.FLEET_ADMIN_ROLE(), admin, {"from": admin})
    whitelist(core, admin, lenders)
    for account in (*lenders, operator):
        core.usd.mint(account, 50_000_000 * USD, {"from": admin})
    spec = DealSpec(
        tranches=[
            TrancheSpec("GPU Fleet Senior 2027", "GPUS-27", 0, SENIOR_FACE, spread_bps=450),
            TrancheSpec("GPU Fleet Junior 2027", "GPUJ-27", 1, JUNIOR_FACE, spread_bps=900),
        ],
        term_days=360,
        quorum=QUORUM,
    )
    deal = open_deal(
        core,
        spec,
        admin=admin,
        issuer=issuer,
        operator=operator,
        trustee=trustee,
        fee_recipient=fees,
        signers=[accounts.add(key) for key in signer_keys],
    )
    year = Year(core, deal, start_block)
    fleet = make_fleet(GPUS, in_service_at=chain[-1].timestamp - 1)
    year.batch_id, tree = pledge_fleet(core, deal, fleet, issuer, operator, attestor)
    year.fleet_root = tree.root

    senior, junior = deal.tranches
    asked = [
        ({"senior": senior, "junior": junior}[name], lenders[n], amount)
        for n, name, amount in SUBSCRIPTIONS
    ]
    for tranche, lender, amount in asked:
        core.usd.approve(tranche, amount, {"from": lender})
        tranche.requestDeposit(amount, lender, lender, {"from": lender})
    for tranche in (senior, junior):
        close_subscription(tranche, issuer)
        tranche.fulfil(lenders, {"from": issuer})
        tranche.drawdown({"from": issuer})
    for tranche, lender, amount in asked:
        shares, refund = tranche.claimShares({"from": lender}).return_value
        year.subscriptions.append((tranche, lender, amount, shares, refund))

    core.usd.approve(deal.servicer, 2**256 - 1, {"from": operator})
    cured = False
    for period, row in enumerate(STORY):
        utilization, uptime, _ = row
        revenue = period_revenue(utilization)
        deal.servicer.payRevenue(revenue, {"from": operator})
        if period == len(STORY) - 1:
            deal.servicer.payRevenue(REFINANCING, {"from": operator})
        wait_for_period_end(deal, period)
        observations = sign_report(
            core,
            deal,
            period,
            [signer_keys[i] for i in honest_signers(period)],
            utilization=utilization,
            uptime=uptime,
            revenue=revenue,
        )
        if period == LYING_PERIOD:  # submitted with the honest ones, and outvoted
            lie_utilization, lie_uptime = LIE
            observations += sign_report(
                core,
                deal,
                period,
                [signer_keys[LYING_SIGNER]],
                utilization=lie_utilization,
                uptime=lie_uptime,
                revenue=period_revenue(lie_utilization),
            )
        core.oracle.submitReport(deal.note_id, period, observations, {"from": anyone})
        tx = deal.servicer.closePeriod({"from": anyone})
        if on_close is not None:
            on_close(deal, period, row, tx)
        required, _ = deal.servicer.topUp()
        if required and not cured:  # the operator cures within the cure period
            extra = make_fleet(
                CURE_GPUS, in_service_at=chain[-1].timestamp - 1, serial_prefix="H100-CURE-"
            )
            pledge_fleet(core, deal, extra, issuer, operator, attestor)
            deal.servicer.cureTopUp({"from": operator})
            cured = True

    for tranche, lender, *_ in year.subscriptions:
        principal = tranche.redeem({"from": lender}).return_value
        coupons = tranche.claimCoupon({"from": lender}).return_value
        year.payouts.append((principal, coupons))
    deal.servicer.releaseCollateral({"from": anyone})
    return year
