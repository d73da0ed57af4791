"""Deploying and wiring the gpucredit contracts with brownie.

One place knows how the pieces fit together, so the tests, the benchmarks and
the scripts deploy the protocol the same way:

    core = deploy_core(admin)                      # stablecoin, registries, oracle
    deal = open_deal(core, DealSpec(...), ...)      # note, tranches, servicer, fleet
    pledge_fleet(core, deal, make_fleet(1_000, ...), operator, attestor)

Needs a loaded brownie project (inside `brownie test` / `brownie run`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from gpucredit.merkle import GpuLeaf, MerkleTree, gpu_key, key_chunks, text_id

DAY = 86_400
YEAR = 365 * DAY
PERIOD = 30 * DAY
USD = 10**6  # the stablecoin has 6 decimals

H100 = text_id("NVIDIA H100 SXM5 80GB")  # a default model of the registry: class 1
B200 = text_id("NVIDIA B200 SXM 180GB")  # class 0
A100 = text_id("NVIDIA A100 80GB")  # class 2
# Keys per `registerGpus` call: about 11.5 M gas with every slot new, under
# the dev chain's 12 M block and the 16,777,216 per-transaction cap.
CHUNK = 500
CHALLENGE_WINDOW = 3 * DAY  # CollateralRegistry.CHALLENGE_WINDOW


def _containers() -> Any:
    from brownie import project

    return project.get_loaded_projects()[0]


@dataclass
class Core:
    """Contracts shared by every note: one registry serves all issuers."""

    usd: Any
    identities: Any
    registry: Any
    oracle: Any


@dataclass
class TrancheSpec:
    """Term sheet of one tranche (amounts in stablecoin units, rates in bps)."""

    name: str
    symbol: str
    seniority: int
    max_size: int
    spread_bps: int
    min_subscription: int = 1_000 * USD
    reference_rate_bps: int = 430
    floor_rate_bps: int = 500
    cap_rate_bps: int = 2_500
    min_collateral_ratio_bps: int = 13_000
    # Cumulative share of the original principal due by each date, as
    # (seconds after the subscription end, cumulative bps); empty = bullet.
    amortization: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class CovenantSpec:
    """Covenant terms with the seeds' defaults (see IServicer.CovenantTerms)."""

    dscr_min_bps: int = 12_500
    max_ltv_bps: int = 7_500
    low_util_max_ltv_bps: int = 6_500
    uptime_sla_bps: int = 9_900
    step_down_util_bps: int = 9_000
    step_down_periods: int = 3
    step_down_bps: int = -200
    step_up_util_bps: int = 6_000
    step_up_periods: int = 1
    step_up_bps: int = 300
    sweep_share_bps: int = 5_000
    reserve_months: int = 3
    cure_period: int = 30 * DAY
    fee_per_period: int = 5_000 * USD

    def as_tuple(self) -> tuple:
        return (
            self.dscr_min_bps,
            self.max_ltv_bps,
            self.low_util_max_ltv_bps,
            self.uptime_sla_bps,
            self.step_down_util_bps,
            self.step_down_periods,
            self.step_down_bps,
            self.step_up_util_bps,
            self.step_up_periods,
            self.step_up_bps,
            self.sweep_share_bps,
            self.reserve_months,
            self.cure_period,
            self.fee_per_period,
        )


@dataclass
class DealSpec:
    """An SPV note: tranches, timeline, covenants and the oracle set-up."""

    tranches: list[TrancheSpec]
    subscription_days: int = 14
    term_days: int = 3 * 365
    covenants: CovenantSpec = field(default_factory=CovenantSpec)
    period_length: int = PERIOD
    heartbeat: int = 7 * DAY
    quorum: int = 2
    # Exact lengths in seconds; when set they take precedence over the days above.
    subscription_seconds: int | None = None
    term_seconds: int | None = None


@dataclass
class Deal:
    """A deployed note: its id, tranches (senior first), servicer and terms."""

    note_id: int
    tranches: list[Any]
    servicer: Any
    spec: DealSpec
    genesis: int

    @property
    def senior(self) -> Any:
        return self.tranches[0]

    @property
    def junior(self) -> Any:
        return self.tranches[1] if len(self.tranches) > 1 else None


def deal_timeline(spec: DealSpec, start: int) -> tuple[int, int]:
    """(subscription end, maturity) of a deal whose window opens at `start`.

    The subscription end is also the oracle fleet's genesis (start of period 0).
    """
    window = spec.subscription_seconds or spec.subscription_days * DAY
    term = spec.term_seconds or spec.term_days * DAY
    sub_end = start + window
    return sub_end, sub_end + term


def tranche_terms(spec: DealSpec, tranche: TrancheSpec, note_id: int, start: int) -> tuple:
    """The `INoteTranche.Terms` tuple of one tranche of `spec`."""
    sub_end, maturity = deal_timeline(spec, start)
    return (
        note_id,
        tranche.seniority,
        tranche.max_size,
        tranche.min_subscription,
        start,
        sub_end,
        maturity,
        tranche.reference_rate_bps,
        tranche.spread_bps,
        tranche.floor_rate_bps,
        tranche.cap_rate_bps,
        tranche.min_collateral_ratio_bps,
    )


def amortization_schedule(
    spec: DealSpec, tranche: TrancheSpec, start: int
) -> tuple[list[int], list[int]]:
    """`setAmortizationSchedule` arguments (due dates, cumulative bps); empty for a bullet."""
    sub_end, _ = deal_timeline(spec, start)
    due = [sub_end + offset for offset, _ in tranche.amortization]
    cumulative = [bps for _, bps in tranche.amortization]
    return due, cumulative


def signer_order(signers: list[Any]) -> list[Any]:
    """Oracle signers in ascending address order, as `registerFleet` stores them."""
    return sorted(signers, key=lambda a: int(str(a), 16))


def deploy_core(admin: Any) -> Core:
    """Deploys the stablecoin, identity and collateral registries and the oracle."""
    c = _containers()
    tx = {"from": admin}
    usd = c.MockStablecoin.deploy("Mock USD Coin", "mUSDC", tx)
    identities = c.IdentityRegistry.deploy(admin, tx)
    registry = c.CollateralRegistry.deploy(admin, tx)
    oracle = c.TelemetryOracle.deploy(admin, tx)
    return Core(usd=usd, identities=identities, registry=registry, oracle=oracle)


def grant_roles(core: Core, admin: Any, issuer: Any, operator: Any, attestor: Any) -> None:
    """The registry roles an issuer, an operator and an attestor need."""
    tx = {"from": admin}
    core.registry.grantRole(core.registry.ISSUER_ROLE(), issuer, tx)
    core.registry.grantRole(core.registry.OPERATOR_ROLE(), operator, tx)
    core.registry.grantRole(core.registry.ATTESTOR_ROLE(), attestor, tx)


def open_note(core: Core, factory: Any, issuer: Any) -> int:
    """Opens a note for `issuer` from `factory`, granting `factory` the
    registry's NOTE_FACTORY_ROLE first if it lacks it (the admin may grant
    itself the role on a dev chain; in production only the NoteFactory holds
    it)."""
    role = core.registry.NOTE_FACTORY_ROLE()
    if not core.registry.hasRole(role, factory):
        core.registry.grantRole(role, factory, {"from": factory})
    return core.registry.openNote(issuer, {"from": factory}).events["NoteOpened"]["noteId"]


def bind_note(
    core: Core,
    factory: Any,
    note_id: int,
    servicer: Any,
    tranches: list[Any],
    operators: list[Any],
) -> Any:
    """Fixes the note's servicer, tranches and operators, once (`bindNote`)."""
    return core.registry.bindNote(note_id, servicer, tranches, operators, {"from": factory})


def whitelist(core: Core, admin: Any, accounts: list[Any], days: int = 5 * 365) -> None:
    """Registers KYC identities for `accounts`, valid for `days`."""
    from brownie import chain

    expiry = chain.time() + days * DAY
    core.identities.registerIdentities(accounts, 840, expiry, {"from": admin})


def open_deal(
    core: Core,
    spec: DealSpec,
    *,
    admin: Any,
    issuer: Any,
    operator: Any,
    trustee: Any,
    fee_recipient: Any,
    signers: list[Any],
    start: int | None = None,
) -> Deal:
    """Opens a note and deploys its tranches and servicer, wired together.

    The oracle fleet's period 0 starts at the end of the subscription window.
    """
    from brownie import chain

    c = _containers()
    tx = {"from": issuer}
    start = chain[-1].timestamp if start is None else start
    sub_end, _ = deal_timeline(spec, start)

    note_id = open_note(core, admin, issuer)
    tranches = []
    for t in spec.tranches:
        terms = tranche_terms(spec, t, note_id, start)
        tranche = c.NoteTranche.deploy(
            t.name, t.symbol, core.usd, core.identities, core.registry, issuer, issuer, terms, tx
        )
        if t.amortization:
            tranche.setAmortizationSchedule(*amortization_schedule(spec, t, start), tx)
        tranches.append(tranche)

    junior = tranches[1] if len(tranches) > 1 else "0x" + "00" * 20
    servicer = c.Servicer.deploy(
        core.usd,
        core.registry,
        core.oracle,
        note_id,
        tranches[0],
        junior,
        issuer,
        operator,
        fee_recipient,
        trustee,
        spec.covenants.as_tuple(),
        tx,
    )
    for tranche in tranches:
        tranche.setSpv(servicer, tx)
        tranche.grantRole(tranche.COVENANT_ROLE(), servicer, tx)
    bind_note(core, admin, note_id, servicer, tranches, [operator])

    fleet_admin = core.oracle.FLEET_ADMIN_ROLE()
    if not core.oracle.hasRole(fleet_admin, admin):
        raise ValueError("admin must hold FLEET_ADMIN_ROLE on the oracle")
    core.oracle.registerFleet(
        note_id,
        operator,
        servicer,
        sub_end,
        spec.period_length,
        spec.heartbeat,
        signer_order(signers),
        spec.quorum,
        {"from": admin},
    )
    return Deal(note_id=note_id, tranches=tranches, servicer=servicer, spec=spec, genesis=sub_end)


def make_fleet(
    count: int,
    *,
    cost: int = 25_000 * USD,
    in_service_at: int,
    model: bytes = H100,
    site: str = "ashburn-1",
    vendor: str = "NVIDIA",
    serial_prefix: str = "H100-",
) -> list[GpuLeaf]:
    """`count` GPU leaves of one model and in-service date (the class is the model's)."""
    site_id = text_id(site)
    return [
        GpuLeaf(
            index=i,
            gpu_key=gpu_key(vendor, f"{serial_prefix}{i:06d}"),
            model=model,
            site_id=site_id,
            attestation_hash=text_id(f"attestation:{serial_prefix}{i:06d}"),
            cost=cost,
            in_service_at=in_service_at,
        )
        for i in range(count)
    ]


def register_batch(
    core: Core, issuer: Any, operator: Any, leaves: list[GpuLeaf], *, chunk: int = CHUNK
) -> tuple[int, MerkleTree, Any]:
    """Registers `leaves` as one batch: the header, then the keys in chunks
    of `chunk`; returns (batch id, tree, the header's tx)."""
    tree = MerkleTree(leaves)
    first = leaves[0]
    registration = (
        issuer,
        tree.root,
        len(leaves),
        sum(leaf.cost for leaf in leaves),
        first.model,
        min(leaf.in_service_at for leaf in leaves),
        text_id(f"attestation-set:{tree.root.hex()}"),
    )
    tx = core.registry.registerBatch(registration, {"from": operator})
    batch_id = tx.events["BatchRegistered"]["batchId"]
    for _, keys in key_chunks([leaf.gpu_key for leaf in leaves], chunk):
        core.registry.registerGpus(batch_id, keys, {"from": operator})
    return batch_id, tree, tx


def wait_challenge_window() -> None:
    """Moves the dev chain's clock past the challenge window of a batch
    attested now: from then on it counts as collateral."""
    from brownie import chain, web3

    # an explicit next timestamp: also right when anvil runs with a fixed
    # block-timestamp interval (where `evm_increaseTime` does nothing)
    target = chain[-1].timestamp + CHALLENGE_WINDOW + 1
    response = web3.provider.make_request("evm_setNextBlockTimestamp", [target])
    if "error" in response:
        raise RuntimeError(f"evm_setNextBlockTimestamp: {response['error']}")
    chain.mine()


def pledge_fleet(
    core: Core,
    deal: Deal,
    leaves: list[GpuLeaf],
    issuer: Any,
    operator: Any,
    attestor: Any,
    *,
    wait: bool = True,
) -> tuple[int, MerkleTree]:
    """Registers, attests and pledges one batch to the deal's note; with
    `wait`, then lets its challenge window pass so that it counts."""
    batch_id, tree, _ = register_batch(core, issuer, operator, leaves)
    batch = core.registry.batchInfo(batch_id)
    core.registry.attestBatch(batch_id, batch["attestationHash"], {"from": attestor})
    core.registry.pledgeBatch(batch_id, deal.note_id, {"from": operator})
    if wait:
        wait_challenge_window()
    return batch_id, tree


def wait_for_period_end(deal: Deal, period: int) -> None:
    """Moves the dev chain's clock past the end of `period` (a report is only
    taken once its period has ended)."""
    from brownie import chain

    from gpucredit.reports import period_bounds

    _, end = period_bounds(deal.genesis, deal.spec.period_length, period)
    if chain[-1].timestamp <= end:
        chain.sleep(end - chain[-1].timestamp + 1)
        chain.mine()


def sign_report(
    core: Core,
    deal: Deal,
    period: int,
    keys: list[str],
    *,
    utilization: int,
    uptime: int,
    revenue: int,
) -> list[tuple]:
    """A period's observation signed with each of `keys`, in the signer order
    `TelemetryOracle.submitReport` takes."""
    from brownie import chain
    from eth_account import Account

    from gpucredit.reports import order_by_signer, period_bounds, sign_observation

    start, end = period_bounds(deal.genesis, deal.spec.period_length, period)
    signed = []
    for key in keys:
        signature = sign_observation(
            key,
            chain.id,
            core.oracle.address,
            deal.note_id,
            period,
            start,
            end,
            utilization,
            uptime,
            revenue,
        )
        signed.append((Account.from_key(key).address, (utilization, uptime, revenue, signature)))
    return order_by_signer(signed)


def submit_report(
    core: Core,
    deal: Deal,
    period: int,
    keys: list[str],
    *,
    utilization: int,
    uptime: int,
    revenue: int,
    sender: Any,
) -> Any:
    """Signs a period's observation with each of `keys` and submits the report,
    once the period has ended (moving the dev chain's clock if need be)."""
    wait_for_period_end(deal, period)
    observations = sign_report(
        core, deal, period, keys, utilization=utilization, uptime=uptime, revenue=revenue
    )
    return core.oracle.submitReport(deal.note_id, period, observations, {"from": sender})


# ---- reading many views at once (the state machines' invariants) ----


@functools.cache
def _local_rpc_session() -> Any:
    """One requests session to the local node without proxy or .netrc look-ups
    (requests otherwise reads the environment on every request: ~1 ms each)."""
    import requests

    session = requests.Session()
    session.trust_env = False
    return session


def skip_proxy_lookups() -> None:
    """Same for brownie's own web3 session (this thread's), once connected."""
    from brownie import web3

    provider = web3.provider
    manager = getattr(provider, "_request_session_manager", None)
    if manager is not None and getattr(provider, "endpoint_uri", None):
        manager.cache_and_return_session(provider.endpoint_uri).trust_env = False


def tolerate_receipt_race(attempts: int = 40) -> None:
    """Brownie waits for a receipt in a thread that gives up with "Tx dropped
    without known replacement" when it sees the sender's nonce counted but no
    receipt yet. Against anvil that is a race, not a dropped transaction: it
    happened about once in 100,000 transactions of a long campaign. On that
    error, poll the receipt again for a while and confirm the transaction as
    brownie would have; a transaction that never appears still raises."""
    import time

    from brownie.exceptions import TransactionError
    from brownie.network.account import _PrivateKeyAccount
    from brownie.network.transaction import Status

    original = _PrivateKeyAccount._await_confirmation
    if getattr(original, "_tolerates_receipt_race", False):
        return

    def _await_confirmation(self, receipt, required_confs, gas_strategy, gas_iter):
        try:
            return original(self, receipt, required_confs, gas_strategy, gas_iter)
        except TransactionError as exc:
            if "dropped without known replacement" not in str(exc):
                raise
            for _ in range(attempts):
                time.sleep(0.05)
                receipt.status = Status(-1)
                receipt._confirmed.clear()
                receipt._await_confirmation(None, required_confs)
                if receipt.status != Status(-2):
                    return receipt
            raise

    _await_confirmation._tolerates_receipt_race = True
    _PrivateKeyAccount._await_confirmation = _await_confirmation


def read_views(*calls: tuple) -> list[Any]:
    """Runs view calls `(contract.method, *args)` in one JSON-RPC batch at the
    latest block: one round trip instead of one per view, which is what makes
    checking every invariant after every step of a long campaign affordable.
    A view that reverts raises with the method and the node's error."""
    from brownie import web3

    batch = [
        {
            "jsonrpc": "2.0",
            "id": i,
            "method": "eth_call",
            "params": [{"to": method._address, "data": method.encode_input(*args)}, "latest"],
        }
        for i, (method, *args) in enumerate(calls)
    ]
    if not batch:
        return []
    replies = _local_rpc_session().post(web3.provider.endpoint_uri, json=batch, timeout=60)
    by_id = {reply["id"]: reply for reply in replies.json()}
    values = []
    for i, (method, *args) in enumerate(calls):
        if "error" in by_id[i]:
            raise RuntimeError(f"{method._name}{tuple(args)}: {by_id[i]['error']}")
        value = method.decode_output(by_id[i]["result"])
        values.append(tuple(value) if isinstance(value, tuple | list) else value)
    return values
