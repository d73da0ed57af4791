"""A live note on anvil, deployed with web3.py the way gpucredit.protocol wires it:
stablecoin, identity and collateral registries, TelemetryOracle, a senior
tranche drawn down against 10 pledged GPUs, and its Servicer as the fleet's
consumer. The oracle nodes under test then close its periods for real.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_account import Account
from harness import Anvil

from gpucredit.merkle import MerkleTree, text_id
from gpucredit.protocol import USD, CovenantSpec, make_fleet

DEV_MNEMONIC = "test test test test test test test test test test test junk"


def dev_account(index: int):
    """anvil's own unlocked account ``index`` with its (public, test-only) key."""
    Account.enable_unaudited_hdwallet_features()
    return Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}")


@dataclass
class Deal:
    usd: Any
    registry: Any
    oracle: Any
    senior: Any
    servicer: Any
    note_id: int
    operator: Any  # LocalAccount: signs telemetry, pays revenue in
    genesis: int
    period_length: int

    @property
    def fleet_id(self) -> int:
        return self.note_id


def open_live_deal(
    anvil: Anvil,
    signers: list[str],
    quorum: int,
    period_length: int,
    first_period_left: float,
    heartbeat: int = 3600,
) -> Deal:
    w3 = anvil.w3
    accounts = w3.eth.accounts
    admin, issuer, operator_addr, attestor, trustee = accounts[:5]
    lender, fee_recipient = accounts[5], accounts[8]
    operator = dev_account(2)
    assert operator.address == operator_addr

    def send(fn, sender):
        return anvil.transact(fn, sender)

    usd = anvil.deploy("MockStablecoin", "Mock USD Coin", "mUSDC")
    identities = anvil.deploy("IdentityRegistry", admin)
    registry = anvil.deploy("CollateralRegistry", admin)
    oracle = anvil.deploy("TelemetryOracle", admin)
    for role, who in (
        ("ISSUER_ROLE", issuer),
        ("OPERATOR_ROLE", operator_addr),
        ("ATTESTOR_ROLE", attestor),
    ):
        send(registry.functions.grantRole(getattr(registry.functions, role)().call(), who), admin)
    now = w3.eth.get_block("latest").timestamp
    send(identities.functions.registerIdentities([lender], 840, now + 5 * 365 * 86_400), admin)
    for who in (lender, operator_addr):
        send(usd.functions.mint(who, 100_000_000 * USD), admin)

    # Ten H100s registered and attested four days back in chain time: their
    # challenge window (three days) has passed when the chain is back on the
    # wall clock, so they count from the pledge on.
    leaves = make_fleet(10, in_service_at=now - 5 * 86_400)
    tree = MerkleTree(leaves)
    attestation = text_id(f"attestation-set:{tree.root.hex()}")
    w3.provider.make_request("anvil_setTime", [now - 4 * 86_400])
    registration = (
        issuer,
        tree.root,
        len(leaves),
        sum(leaf.cost for leaf in leaves),
        leaves[0].model,
        now - 5 * 86_400,
        attestation,
    )
    batch_id = registry.functions.registerBatch(registration).call({"from": operator_addr})
    send(registry.functions.registerBatch(registration), operator_addr)
    keys = [leaf.gpu_key for leaf in leaves]
    send(registry.functions.registerGpus(batch_id, keys), operator_addr)
    send(registry.functions.attestBatch(batch_id, attestation), attestor)
    w3.provider.make_request("anvil_setTime", [int(__import__("time").time())])
    w3.provider.make_request("evm_mine", [])

    # The note factory creates and wires the note in one transaction.
    tranche_impl = anvil.deploy("NoteTranche", usd.address, identities.address, registry.address)
    servicer_impl = anvil.deploy("Servicer", usd.address, registry.address, oracle.address)
    factory = anvil.deploy(
        "NoteFactory",
        tranche_impl.address,
        servicer_impl.address,
        usd.address,
        identities.address,
        registry.address,
        oracle.address,
    )
    role = registry.functions.NOTE_FACTORY_ROLE().call()
    send(registry.functions.grantRole(role, factory.address), admin)
    # the window closes only at its end: a few seconds, waited for below
    now = w3.eth.get_block("latest").timestamp
    sub_end = now + 8
    terms = (
        0,
        0,
        180_000 * USD,
        1_000 * USD,
        now - 1,
        sub_end,
        sub_end + 3 * 365 * 86_400,
        430,
        450,
        500,
        2_500,
        13_000,
    )
    params = (
        [("GPU Senior", "GPU-A", terms, [], [])],
        operator_addr,
        fee_recipient,
        trustee,
        CovenantSpec(fee_per_period=100 * USD).as_tuple(),
    )
    receipt = send(factory.functions.createNote(params), issuer)
    created = factory.events.NoteCreated().process_receipt(receipt)[0]["args"]
    note_id = created["noteId"]
    senior = w3.eth.contract(address=created["tranches"][0], abi=tranche_impl.abi)
    servicer = w3.eth.contract(address=created["servicer"], abi=servicer_impl.abi)

    genesis = int(__import__("time").time() + first_period_left) - period_length
    send(
        oracle.functions.registerFleet(
            note_id,
            operator_addr,
            servicer.address,
            genesis,
            period_length,
            heartbeat,
            sorted(signers, key=lambda a: int(a, 16)),
            quorum,
        ),
        admin,
    )

    # The fleet pledged, then the senior tranche subscribed and drawn.
    send(registry.functions.pledgeBatch(batch_id, note_id), operator_addr)

    amount = 180_000 * USD  # LTV 72 %: above the 65 % limit of the low-utilization step
    send(usd.functions.approve(senior.address, amount), lender)
    send(senior.functions.requestDeposit(amount, lender, lender), lender)
    while w3.eth.get_block("latest").timestamp < sub_end:
        __import__("time").sleep(0.5)
        w3.provider.make_request("evm_mine", [])
    send(senior.functions.closeSubscription(), issuer)
    send(senior.functions.fulfil([lender]), issuer)
    send(senior.functions.drawdown(), issuer)
    send(usd.functions.approve(servicer.address, 2**256 - 1), operator_addr)
    return Deal(usd, registry, oracle, senior, servicer, note_id, operator, genesis, period_length)
