"""Gas per operation (receipt gasUsed, 21k intrinsic included) -> bench/gas.json.

Run with `make bench` (or `python -m gpucredit.run bench/gas.py`
from the repo root): a brownie script on a private anvil. It deploys the
protocol, drives each operation the issues name and prints the table.

Keys:
- registry.*: one 10,000-GPU batch: the header, the GPU keys in chunks of
  500 (one transaction each), the attestation and the pledge.
  `pledge_per_gpu_10000` is the sum of all of them divided by 10,000 (target
  24,000: a new storage slot per GPU costs 22,100); `register_chunk_max` the
  largest transaction (under the 16,777,216 cap of EIP-7825); `txs_10000`
  the number of transactions. `... run bench/gas.py registry_only` runs this
  section alone.
- note.create: the factory transaction that creates a two-tranche note:
  opens it in the registry, clones and initialises both tranches and the
  servicer and binds them (must stay under the 16,777,216 per-tx gas cap).
- note.*: a senior tranche's subscription, claim, transfer between two
  existing holders, coupon claim and redemption; next to them the worst
  realistic cases (issue 14): `claim_coupon_escrowed_face` (the claim also
  takes face still in escrow), `claim_coupon_after_sweep` (a holder's first
  claim after a principal sweep), `transfer_after_sweep` (the sender settles
  the swept principal) and `transfer_first_time_recipient` (the receiver's
  slots are written from zero), `claim_coupon_after_rate_step` and
  `transfer_after_rate_step` (the first claim and transfer after a period
  close stepped the coupon). Every `note.transfer*` target is 100,000 and
  every `note.claim_coupon*` 90,000 (issue 14). `... run bench/gas.py
  note_only` runs this section alone.
- oracle.submit_report_3of4 / _5of7: a report of a fleet with 4 signers and
  f = 1 (3 observations) / 7 signers and f = 2 (5 observations), the smallest
  sets for one and two faulty signers (quorum 2f + 1, n >= 3f + 1).
- servicer.close_period_{10,1000}: a period close that steps the coupon
  (covenants, coupon step, waterfall, both tranches paid) on a note with 10
  or 1,000 holders and GPUs: it must not grow with either. `_first_` is the
  first (cold) close, `_shock_` a close below 60 % utilization (step-up,
  top-up requirement, sweep, equity blocked); see bench_servicer.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from brownie import TrancheStub, accounts, chain, network, web3
from eth_account import Account
from rich.console import Console
from rich.table import Table

from gpucredit.merkle import MerkleTree, key_chunks, text_id
from gpucredit.protocol import (
    CHUNK,
    DAY,
    USD,
    CovenantSpec,
    DealSpec,
    TrancheSpec,
    bind_note,
    deploy_core,
    grant_roles,
    make_fleet,
    note_params,
    open_deal,
    open_note,
    pledge_fleet,
    sign_report,
    wait_for_period_end,
)

OUT = Path(__file__).resolve().parent / "gas.json"
SIGNER_KEYS = [f"0x{(0xB0B0 + i):064x}" for i in range(7)]
TARGETS = {
    "note.create": 16_777_216,
    "registry.pledge_per_gpu_10000": 24_000,
    "registry.register_chunk_max": 16_777_215,  # EIP-7825: under 2^24 gas per transaction
    "note.transfer": 90_000,
    "note.claim_coupon": 80_000,
    # issue 14: the worst realistic case of each, against its own target
    "note.transfer_first_time_recipient": 100_000,
    "note.transfer_after_sweep": 100_000,
    "note.claim_coupon_escrowed_face": 90_000,
    "note.claim_coupon_after_sweep": 90_000,
    "note.transfer_after_rate_step": 100_000,
    "note.claim_coupon_after_rate_step": 90_000,
    "note.request_deposit": 120_000,
    "oracle.submit_report_3of4": 90_000,
    "servicer.close_period_10": 250_000,
    "servicer.close_period_1000": 250_000,
}


def _roles():
    admin, issuer, operator, attestor, trustee, fees = accounts[:6]
    return admin, issuer, operator, attestor, trustee, fees


@dataclass(frozen=True)
class Key:
    """A local account: address and private key."""

    address: str
    private_key: bytes


class Sender:
    """Sends transactions with plain web3 and explicit nonces.

    Brownie's confirmation wait races anvil over long runs of transactions
    (it sees the nonce move before the receipt exists and calls a mined
    transaction dropped), and waiting for each receipt in turn is slow; so
    every transaction after deployment goes through here: `send` many, then
    `wait` for all their receipts, or `tx` for one.
    """

    def __init__(self) -> None:
        self._nonces: dict[str, int] = {}
        self._sent: list[tuple[str, bytes]] = []

    def send(self, contract, function: str, *args, sender, gas: int = 500_000) -> None:
        call = web3.eth.contract(address=contract.address, abi=contract.abi).functions[function](
            *args
        )
        address = sender.address
        if address not in self._nonces:
            self._nonces[address] = web3.eth.get_transaction_count(address)
        params = {"from": address, "gas": gas, "gasPrice": GAS_PRICE, "chainId": chain.id}
        params["nonce"] = self._nonces[address]
        self._nonces[address] += 1
        if isinstance(sender, Key):
            signed = Account.sign_transaction(call.build_transaction(params), sender.private_key)
            txid = web3.eth.send_raw_transaction(signed.raw_transaction)
        else:
            txid = call.transact(params)
        self._sent.append((function, txid))

    def wait(self) -> list:
        # with automine off (see `many`), mine blocks until everything is in
        while web3.provider.make_request("txpool_status", [])["result"]["pending"] != "0x0":
            web3.provider.make_request("evm_mine", [])
        receipts = []
        for function, txid in self._sent:
            receipt = web3.eth.wait_for_transaction_receipt(txid, timeout=120, poll_latency=0.01)
            if receipt["status"] != 1:
                raise RuntimeError(f"{function} reverted: {txid.hex()}")
            receipts.append(receipt)
        self._sent.clear()
        self._nonces.clear()
        return receipts

    def tx(self, contract, function: str, *args, sender):
        self.send(contract, function, *args, sender=sender)
        return self.wait()[0]

    def many(self, calls, gas: int = 500_000) -> list:
        """Sends `(contract, function, args, sender)` calls with automine off,
        so anvil packs many into each block, then waits for all of them."""
        web3.provider.make_request("evm_setAutomine", [False])
        try:
            for contract, function, args, sender in calls:
                self.send(contract, function, *args, sender=sender, gas=gas)
            return self.wait()
        finally:
            web3.provider.make_request("evm_setAutomine", [True])


SEND = Sender()
# Full blocks lift anvil's base fee off 0, and it never returns to 0: pay a price.
GAS_PRICE = 10**9


def _new_core():
    admin, issuer, operator, attestor, _, _ = _roles()
    core = deploy_core(admin)
    grant_roles(core, admin, issuer, operator, attestor)
    core.oracle.grantRole(core.oracle.FLEET_ADMIN_ROLE(), admin, {"from": admin})
    return core


def _lenders(count: int, seed: int) -> list[Key]:
    """`count` fresh local accounts with deterministic keys, given ETH for gas."""
    keys = []
    for i in range(count):
        account = Account.from_key((seed * 1_000_000 + i + 1).to_bytes(32, "big"))
        keys.append(Key(account.address, account.key))
        web3.provider.make_request("anvil_setBalance", [account.address, hex(10**18)])
    return keys


def _whitelist(core, lenders: list[Key]) -> None:
    expiry = chain[-1].timestamp + 5 * 365 * DAY
    batches = [[x.address for x in lenders[i : i + 100]] for i in range(0, len(lenders), 100)]
    calls = [
        (core.identities, "registerIdentities", (b, 840, expiry), accounts[0]) for b in batches
    ]
    SEND.many(calls, gas=5_000_000)


def _deal(core, gpus: int, holders: int, signer_count: int, quorum: int, seed: int):
    """A note on `gpus` GPUs with `holders` lenders in the senior tranche, drawn."""
    admin, issuer, operator, attestor, trustee, fees = _roles()
    fleet_value = gpus * 25_000 * USD
    senior = TrancheSpec(
        "GPU Senior", "GPU-A", 0, fleet_value * 55 // 100, spread_bps=450, min_subscription=1
    )
    junior = TrancheSpec(
        "GPU Junior", "GPU-B", 1, fleet_value * 10 // 100, spread_bps=900, min_subscription=1
    )
    # fees scale with the deal so every size runs the same waterfall
    covenants = CovenantSpec(fee_per_period=fleet_value // 5_000)
    spec = DealSpec(tranches=[senior, junior], quorum=quorum, covenants=covenants)
    signers = [accounts.add(key) for key in SIGNER_KEYS[:signer_count]]
    deal = open_deal(
        core,
        spec,
        admin=admin,
        issuer=issuer,
        operator=operator,
        trustee=trustee,
        fee_recipient=fees,
        signers=signers,
    )
    leaves = make_fleet(gpus, in_service_at=chain[-1].timestamp - 1, serial_prefix=f"H100-{seed}-")
    pledge_fleet(core, deal, leaves, issuer, operator, attestor)
    lenders = _lenders(holders, seed)
    _whitelist(core, lenders)
    # the senior tranche gets every holder; one holder is enough for the junior
    for tranche, spec_t, holders_t in zip(
        deal.tranches, spec.tranches, [lenders, lenders[:1]], strict=True
    ):
        share = spec_t.max_size // len(holders_t)
        # three rounds: a block may order different senders' transactions freely
        SEND.many((core.usd, "mint", (x.address, share), admin) for x in holders_t)
        SEND.many((core.usd, "approve", (tranche.address, share), x) for x in holders_t)
        SEND.many((tranche, "requestDeposit", (share, x.address, x.address), x) for x in holders_t)
    _wait_for_window_end(deal.senior)
    for tranche, holders_t in zip(deal.tranches, [lenders, lenders[:1]], strict=True):
        SEND.tx(tranche, "closeSubscription", sender=issuer)
        chunks = [
            [x.address for x in holders_t[i : i + 100]] for i in range(0, len(holders_t), 100)
        ]
        SEND.many(((tranche, "fulfil", (chunk,), issuer) for chunk in chunks), gas=8_000_000)
        SEND.tx(tranche, "drawdown", sender=issuer)
        SEND.many((tranche, "claimShares", (), lender) for lender in holders_t)
    SEND.send(core.usd, "mint", operator.address, 10**9 * USD, sender=admin)
    SEND.send(core.usd, "approve", deal.servicer.address, 2**256 - 1, sender=operator)
    SEND.wait()
    return deal, lenders


def _wait_for_window_end(tranche) -> None:
    """The window closes only at its end: move the clock there."""
    end = tranche.terms()[5]
    if chain[-1].timestamp < end:
        chain.sleep(end - chain[-1].timestamp + 1)
        chain.mine()


def _report(core, deal, period, keys, utilization=9_200, uptime=9_950, revenue=None):
    """Signs and submits a period's report; returns the receipt."""
    revenue = revenue if revenue is not None else deal.senior.originalPrincipal() // 10
    wait_for_period_end(deal, period)
    observations = sign_report(
        core, deal, period, keys, utilization=utilization, uptime=uptime, revenue=revenue
    )
    return SEND.tx(
        core.oracle, "submitReport", deal.note_id, period, observations, sender=accounts[9]
    )


def _close(core, deal, period, keys, utilization, revenue):
    operator = accounts[2]
    SEND.tx(deal.servicer, "payRevenue", revenue, sender=operator)
    _report(core, deal, period, keys, utilization=utilization, revenue=revenue)
    return SEND.tx(deal.servicer, "closePeriod", sender=accounts[9])


def bench_registry(gas: dict) -> None:
    """A 10,000-GPU fleet: the header, the keys in chunks of CHUNK (one new
    storage slot per GPU), the attestation and the pledge."""
    core = _new_core()
    admin, issuer, operator, attestor, _, _ = _roles()
    note_id = open_note(core, admin, issuer)
    stub = TrancheStub.deploy({"from": admin})
    bind_note(core, admin, note_id, admin, [stub], [operator])
    leaves = make_fleet(10_000, in_service_at=chain[-1].timestamp - 1)
    tree = MerkleTree(leaves)
    leaf = leaves[0]
    registration = (issuer.address, tree.root, 10_000, 10_000 * leaf.cost, leaf.model)
    registration += (leaf.in_service_at, text_id("attestation-set"))
    register = SEND.tx(core.registry, "registerBatch", registration, sender=operator)
    batch_id = 1  # the first batch of a fresh registry
    chunks = []
    for _, keys in key_chunks([x.gpu_key for x in leaves], CHUNK):
        SEND.send(core.registry, "registerGpus", batch_id, keys, sender=operator, gas=11_990_000)
        chunks.append(SEND.wait()[0])
    attest = SEND.tx(core.registry, "attestBatch", batch_id, text_id("attested"), sender=attestor)
    pledge = SEND.tx(core.registry, "pledgeBatch", batch_id, note_id, sender=operator)
    receipts = [register, *chunks, attest, pledge]
    gas["registry.register_batch"] = register["gasUsed"]
    gas["registry.register_chunk_max"] = max(r["gasUsed"] for r in receipts)
    gas["registry.register_chunk_keys"] = CHUNK
    gas["registry.attest_batch"] = attest["gasUsed"]
    gas["registry.pledge_batch"] = pledge["gasUsed"]
    gas["registry.txs_10000"] = len(receipts)
    total = sum(r["gasUsed"] for r in receipts)
    gas["registry.pledge_per_gpu_10000"] = -(-total // 10_000)


def bench_note(gas: dict) -> None:
    """Subscription, claim, transfer, coupon claim and redemption on a senior tranche."""
    core = _new_core()
    admin, issuer, operator, attestor, trustee, fees = _roles()
    spec = DealSpec(
        tranches=[TrancheSpec("GPU Senior", "GPU-A", 0, 1_200_000 * USD, spread_bps=450)]
    )
    signers = [accounts.add(key) for key in SIGNER_KEYS[:4]]
    deal = open_deal(
        core,
        spec,
        admin=admin,
        issuer=issuer,
        operator=operator,
        trustee=trustee,
        fee_recipient=fees,
        signers=signers,
    )
    pledge_fleet(
        core,
        deal,
        make_fleet(100, in_service_at=chain[-1].timestamp - 1),
        issuer,
        operator,
        attestor,
    )
    senior = deal.senior
    a, b, c = lenders = _lenders(3, seed=7)
    _whitelist(core, lenders)
    for lender in lenders:
        SEND.send(core.usd, "mint", lender.address, 400_000 * USD, sender=admin)
        SEND.send(core.usd, "approve", senior.address, 2**256 - 1, sender=lender)
    SEND.wait()
    SEND.tx(senior, "requestDeposit", 400_000 * USD, a.address, a.address, sender=a)
    request = SEND.tx(senior, "requestDeposit", 400_000 * USD, b.address, b.address, sender=b)
    gas["note.request_deposit"] = request["gasUsed"]
    SEND.tx(senior, "requestDeposit", 400_000 * USD, c.address, c.address, sender=c)
    _wait_for_window_end(senior)
    SEND.tx(senior, "closeSubscription", sender=issuer)
    SEND.tx(senior, "fulfil", [x.address for x in lenders], sender=issuer)
    SEND.tx(senior, "drawdown", sender=issuer)
    # lenders claim a day later, so the claim settles a nonzero accrual; in the
    # drawdown's own second it costs ~44k less, and the figure depended on how
    # fast the machine sent the transactions
    chain.sleep(DAY)
    SEND.tx(senior, "claimShares", sender=a)
    gas["note.claim_shares"] = SEND.tx(senior, "claimShares", sender=b)["gasUsed"]
    # c leaves its face in escrow: its first coupon claim takes the face first

    # transfer between two holders that already hold notes, after accrual
    chain.sleep(10 * DAY)
    SEND.tx(senior, "transfer", b.address, 1_000 * USD, sender=a)
    chain.sleep(10 * DAY)
    gas["note.transfer"] = SEND.tx(senior, "transfer", b.address, 1_000 * USD, sender=a)["gasUsed"]

    # coupons funded by two period closes; the second claim is the steady state
    SEND.send(core.usd, "mint", operator.address, 10**7 * USD, sender=admin)
    SEND.send(core.usd, "approve", deal.servicer.address, 2**256 - 1, sender=operator)
    SEND.wait()
    for period in (0, 1):
        _close(core, deal, period, SIGNER_KEYS[:3], 9_000, 200_000 * USD)
        claim = SEND.tx(senior, "claimCoupon", sender=a)
    gas["note.claim_coupon"] = claim["gasUsed"]
    # every worst case below runs a day after the transaction before it, so
    # it accrues and settles (in the same second it would not: cheaper)
    chain.sleep(DAY)
    escrowed = SEND.tx(senior, "claimCoupon", sender=c)
    gas["note.claim_coupon_escrowed_face"] = escrowed["gasUsed"]

    # a third period at >= 90 % utilization steps the coupon down: the first
    # claim and transfer after the step
    rate = senior.currentRateBps()
    _close(core, deal, 2, SIGNER_KEYS[:3], 9_000, 200_000 * USD)
    if senior.currentRateBps() == rate:
        raise RuntimeError("the third period did not step the coupon")
    chain.sleep(DAY)
    stepped = SEND.tx(senior, "claimCoupon", sender=a)
    gas["note.claim_coupon_after_rate_step"] = stepped["gasUsed"]
    chain.sleep(DAY)
    stepped = SEND.tx(senior, "transfer", b.address, 1_000 * USD, sender=a)
    gas["note.transfer_after_rate_step"] = stepped["gasUsed"]

    # a low-DSCR period sweeps cash to principal; the holder redeems its share
    SEND.tx(deal.servicer, "payRevenue", 400_000 * USD, sender=operator)
    _report(core, deal, 3, SIGNER_KEYS[:3], revenue=1_000 * USD)
    SEND.tx(deal.servicer, "closePeriod", sender=accounts[9])
    gas["note.redeem"] = SEND.tx(senior, "redeem", sender=a)["gasUsed"]

    # worst cases after the sweep: b's first coupon claim after the sweep
    # (its stablecoin balance written from zero); c sends after the sweep
    # (settles the swept principal); a sends to a first-time holder
    chain.sleep(DAY)
    after = SEND.tx(senior, "claimCoupon", sender=b)
    gas["note.claim_coupon_after_sweep"] = after["gasUsed"]
    chain.sleep(DAY)
    moved = SEND.tx(senior, "transfer", a.address, 1_000 * USD, sender=c)
    gas["note.transfer_after_sweep"] = moved["gasUsed"]
    (d,) = _lenders(1, seed=8)
    _whitelist(core, [d])
    chain.sleep(DAY)
    first = SEND.tx(senior, "transfer", d.address, 1_000 * USD, sender=a)
    gas["note.transfer_first_time_recipient"] = first["gasUsed"]


def bench_create(gas: dict) -> None:
    """The factory transaction of a two-tranche note, every contract wired."""
    core = _new_core()
    _, issuer, operator, _, trustee, fees = _roles()
    spec = DealSpec(
        tranches=[
            TrancheSpec("GPU Senior", "GPU-A", 0, 14_000_000 * USD, spread_bps=450),
            TrancheSpec("GPU Junior", "GPU-B", 1, 3_000_000 * USD, spread_bps=900),
        ]
    )
    params = note_params(
        spec, chain[-1].timestamp + 60, operator=operator, fee_recipient=fees, trustee=trustee
    )
    tx = core.factory.createNote(params, {"from": issuer})
    gas["note.create"] = tx.gas_used


def bench_oracle(gas: dict) -> None:
    core = _new_core()
    deal, _ = _deal(core, gpus=10, holders=1, signer_count=4, quorum=3, seed=11)
    gas["oracle.submit_report_3of4"] = _report(core, deal, 0, SIGNER_KEYS[:3])["gasUsed"]
    deal, _ = _deal(core, gpus=10, holders=1, signer_count=7, quorum=5, seed=12)
    gas["oracle.submit_report_5of7"] = _report(core, deal, 0, SIGNER_KEYS[:5])["gasUsed"]


def bench_servicer(gas: dict, size: int) -> None:
    """Period closes of a note with `size` holders and `size` GPUs.

    close_period_first: the first close (cold: new storage slots for the
    reserve, payouts and tranche cash). close_period: a steady-state close
    that steps the coupon (third period >= 90 %: -200 bps). close_period_shock:
    a close below 60 %: step-up, top-up requirement, sweep, equity blocked.
    """
    core = _new_core()
    deal, _ = _deal(core, gpus=size, holders=size, signer_count=4, quorum=3, seed=size)
    revenue = deal.senior.originalPrincipal() // 20
    closes = [
        _close(core, deal, period, SIGNER_KEYS[:3], utilization, revenue)
        for period, utilization in enumerate((9_200, 9_300, 9_400, 5_500))
    ]
    if deal.servicer.stepState()[0] != 300 or deal.servicer.topUp()[0] == 0:
        raise RuntimeError("the shock period did not step up and require a top-up")
    gas[f"servicer.close_period_first_{size}"] = closes[0]["gasUsed"]
    gas[f"servicer.close_period_{size}"] = closes[2]["gasUsed"]
    gas[f"servicer.close_period_shock_{size}"] = closes[3]["gasUsed"]


def _tolerate_receipt_race() -> None:
    """The tests' patch for brownie's receipt race (tests/brownie_patches.py):
    under load its confirmation thread can call a mined transaction dropped."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from brownie_patches import tolerate_receipt_race

    tolerate_receipt_race()


def main() -> None:
    _tolerate_receipt_race()
    network.gas_price(GAS_PRICE)
    gas: dict[str, int] = {}
    console = Console()
    with console.status("registry: 10,000-GPU batch"):
        bench_registry(gas)
    with console.status("note flows"):
        bench_create(gas)
        bench_note(gas)
    with console.status("oracle: 3-of-4 and 5-of-7 reports"):
        bench_oracle(gas)
    for size in (10, 1_000):
        with console.status(f"servicer: close_period with {size} holders and GPUs"):
            bench_servicer(gas, size)
    gas["servicer.close_period"] = max(
        gas["servicer.close_period_10"], gas["servicer.close_period_1000"]
    )
    _write(gas, console)


def registry_only() -> None:
    """`python -m gpucredit.localchain run bench/gas.py registry_only`: the
    registry figures alone, merged into bench/gas.json."""
    _tolerate_receipt_race()
    network.gas_price(GAS_PRICE)
    gas: dict[str, int] = {}
    console = Console()
    with console.status("registry: 10,000 GPUs"):
        bench_registry(gas)
    previous = json.loads(OUT.read_text()) if OUT.exists() else {}
    kept = {k: v for k, v in previous.items() if not k.startswith("registry.")}
    _write({**kept, **gas}, console)


def note_only() -> None:
    """`python -m gpucredit.localchain run bench/gas.py note_only`: the
    note figures alone, merged into bench/gas.json."""
    _tolerate_receipt_race()
    network.gas_price(GAS_PRICE)
    gas: dict[str, int] = {}
    console = Console()
    with console.status("note flows"):
        bench_create(gas)
        bench_note(gas)
    previous = json.loads(OUT.read_text()) if OUT.exists() else {}
    kept = {k: v for k, v in previous.items() if not k.startswith("note.")}
    _write({**kept, **gas}, console)


def _write(gas: dict[str, int], console: Console) -> None:
    OUT.write_text(json.dumps(dict(sorted(gas.items())), indent=2) + "\n")
    table = Table(title="gpucredit gas per operation (receipt gasUsed)")
    table.add_column("operation")
    table.add_column("gas", justify="right")
    table.add_column("target", justify="right")
    table.add_column("ok")
    for key, value in sorted(gas.items()):
        target = TARGETS.get(key)
        ok = "" if target is None else ("yes" if value <= target else "NO")
        table.add_row(key, f"{value:,}", "" if target is None else f"<= {target:,}", ok)
    console.print(table)
    console.print(f"written to {OUT}")
