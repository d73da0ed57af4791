"""Deploying and wiring the gpucredit contracts with brownie.

One place knows how the pieces fit together, so the tests, the benchmarks and
the scripts deploy the protocol the same way:

    core = deploy_core(admin)                      # stablecoin, registries, oracle, factory
    deal = open_deal(core, DealSpec(...), ...)      # one factory tx; then the oracle fleet
    pledge_fleet(core, deal, make_fleet(1_000, ...), operator, attestor)

Needs a loaded brownie project (inside `brownie test` or a script run by `python -m gpucredit.run`).
"""

from __future__ import annotations

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
    factory: Any = None  # NoteFactory; deployed by deploy_core or on first open_deal


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
    quorum: int = 3  # 2f + 1 with f = 1: needs at least 4 signers
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
    core = Core(usd=usd, identities=identities, registry=registry, oracle=oracle)
    deploy_factory(core, admin)
    return core


def deploy_factory(core: Core, admin: Any) -> Any:
    """Deploys the tranche and servicer implementations and the note factory,
    and grants the factory the registry's NOTE_FACTORY_ROLE."""
    c = _containers()
    tx = {"from": admin}
    tranche = c.NoteTranche.deploy(core.usd, core.identities, core.registry, tx)
    servicer = c.Servicer.deploy(core.usd, core.registry, core.oracle, tx)
    factory = c.NoteFactory.deploy(
        tranche, servicer, core.usd, core.identities, core.registry, core.oracle, tx
    )
    core.registry.grantRole(core.registry.NOTE_FACTORY_ROLE(), factory, tx)
    core.factory = factory
    return factory


def clone_tranche(
    core: Core,
    admin: Any,
    issuer: Any,
    servicer: Any,
    terms: tuple,
    name: str = "GPU Senior",
    symbol: str = "GPU-A",
    schedule: tuple[list[int], list[int]] = ([], []),
) -> Any:
    """Test helper: a bare NoteTranche clone of `core` wired by hand to
    `servicer` (a plain wallet in tests that pay it directly). Real notes
    come from the factory (`open_deal`); `CloneMaker` is a test contract."""
    c = _containers()
    tx = {"from": admin}
    cached = getattr(core, "_bare_tranche", None)
    if cached is None:
        implementation = c.NoteTranche.deploy(core.usd, core.identities, core.registry, tx)
        cached = (c.CloneMaker.deploy(tx), implementation)
        object.__setattr__(core, "_bare_tranche", cached)
    maker, implementation = cached
    address = maker.clone(implementation, tx).events["Cloned"]["instance"]
    tranche = c.NoteTranche.at(address)
    tranche.init_tx = tranche.initialize(name, symbol, issuer, servicer, terms, *schedule, tx)
    return tranche


def note_params(
    spec: DealSpec, start: int, *, operator: Any, fee_recipient: Any, trustee: Any
) -> tuple:
    """The `INoteFactory.NoteParams` tuple of `spec` (the factory sets each noteId)."""
    tranches = []
    for t in spec.tranches:
        due, cumulative = amortization_schedule(spec, t, start)
        tranches.append((t.name, t.symbol, tranche_terms(spec, t, 0, start), due, cumulative))
    return (
        tranches,
        str(operator),
        str(fee_recipient),
        str(trustee),
        spec.covenants.as_tuple(),
    )


def close_subscription(tranche: Any, issuer: Any) -> Any:
    """Waits (dev chain) for the end of the tranche's window, then closes it."""
    from brownie import chain, web3

    end = tranche.terms()[5]
    if chain[-1].timestamp < end:
        # a block exactly at the end (works whether or not the chain follows the wall clock)
        web3.provider.make_request("evm_setNextBlockTimestamp", [end])
        chain.mine()
    return tranche.closeSubscription({"from": issuer})


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
    """Creates a note through the factory (one transaction: tranches and
    servicer cloned and wired) and registers its oracle fleet.

    The oracle fleet's period 0 starts at the end of the subscription window.
    """
    from brownie import chain

    c = _containers()
    tx = {"from": issuer}
    start = chain[-1].timestamp if start is None else start
    sub_end, _ = deal_timeline(spec, start)

    if core.factory is None:
        deploy_factory(core, admin)
    params = note_params(
        spec, start, operator=operator, fee_recipient=fee_recipient, trustee=trustee
    )
    created = core.factory.createNote(params, tx).events["NoteCreated"]
    note_id = created["noteId"]
    tranches = [c.NoteTranche.at(address) for address in created["tranches"]]
    servicer = c.Servicer.at(created["servicer"])

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


def mine_at(timestamp: int) -> None:
    """Mines the dev chain's next block stamped `timestamp` (later blocks follow it).

    An explicit next timestamp, not `chain.sleep`: brownie's clock is the wall
    clock plus an offset and can run ahead of anvil's under load, and
    `evm_increaseTime` does nothing when anvil runs with a fixed block-timestamp
    interval."""
    from brownie import chain, web3

    response = web3.provider.make_request("evm_setNextBlockTimestamp", [timestamp])
    if "error" in response:
        raise RuntimeError(f"evm_setNextBlockTimestamp: {response['error']}")
    chain.mine()


def wait_challenge_window() -> None:
    """Moves the dev chain's clock past the challenge window of a batch
    attested now: from then on it counts as collateral."""
    from brownie import chain

    mine_at(chain[-1].timestamp + CHALLENGE_WINDOW + 1)


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
