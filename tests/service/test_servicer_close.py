"""Full path on a live note: signed telemetry -> report on-chain -> the node closes
the period on the Servicer -> coupon step and top-up requirement."""

from __future__ import annotations

from deal import open_live_deal
from harness import Fleet, revenue, sample, signed_batch, wait_until
from web3.logs import DISCARD

from gpucredit.protocol import USD


def test_low_utilization_report_steps_the_coupon_up(make_node, anvil, chain_id):
    node = make_node("closer", start=False)
    # 30 s for the node to start and take the batch on a loaded machine (15 s failed there)
    deal = open_live_deal(anvil, [node.address], 1, 60, first_period_left=30)
    node.env["GPUCREDIT_ORACLE_ORACLE_ADDRESS"] = deal.oracle.address
    node.start()
    fleet = Fleet(
        deal.fleet_id,
        deal.operator,
        deal.servicer.address,
        deal.genesis,
        deal.period_length,
        3600,
        [node.account],
        1,
    )
    rate_before = deal.senior.functions.currentRateBps().call()
    assert deal.servicer.functions.nextPeriodToClose().call() == 0

    g = deal.genesis
    body = signed_batch(
        fleet,
        chain_id,
        deal.oracle.address,
        [
            sample(g + 10 * i, "0.0027", "0.0015", 10, interval_seconds=10, gpu_id=f"h100-{i}")
            for i in range(4)
        ],
        [revenue(g + 1, "inv-0001", 1_000 * USD, "take_or_pay")],
    )
    r = node.post(f"/v1/fleets/{deal.fleet_id}/telemetry", body)
    assert r.status_code == 201, r.text
    anvil.transact(deal.servicer.functions.payRevenue(1_000 * USD), deal.operator.address)

    closed = wait_until(
        lambda: [rep for rep in node.reports(deal.fleet_id) if rep["closed"]],
        70,
        0.3,
        "the period to be closed on the servicer",
    )
    (report,) = closed
    assert report["utilization_bps"] == 10_000 * 1_500 // 2_700 == 5_555  # below 60 %
    assert deal.servicer.functions.nextPeriodToClose().call() == 1
    receipt = anvil.w3.eth.get_transaction_receipt(report["close_tx_hash"])
    stepped = deal.servicer.events.CouponStepped().process_receipt(receipt, errors=DISCARD)
    assert [(e.args.period, e.args.oldStepBps, e.args.newStepBps) for e in stepped] == [(0, 0, 300)]
    (topup,) = deal.servicer.events.TopUpRequired().process_receipt(receipt, errors=DISCARD)
    required = -(-180_000 * USD * 10_000 // 6_500)  # back to 65 % LTV, rounded up
    assert topup.args.period == 0 and topup.args.requiredCollateral == required
    assert deal.senior.functions.currentRateBps().call() == rate_before + 300
    actions = sorted((t["action"], t["state"]) for t in node.transactions(deal.fleet_id))
    assert actions == [("close", "mined"), ("report", "mined")]
