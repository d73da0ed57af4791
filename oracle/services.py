"""The objects one node runs with, built once at startup."""

from __future__ import annotations

import time
from dataclasses import dataclass

from eth_account.signers.local import LocalAccount

from oracle import redact
from oracle.chain import Chain, FleetDirectory
from oracle.clock import Clock, make_clock
from oracle.errors import ChainUnavailable
from oracle.ingest import Ingestor
from oracle.limits import OperatorRateLimit
from oracle.metrics import Metrics
from oracle.node import Node
from oracle.settings import Settings
from oracle.store import Store


@dataclass
class Services:
    settings: Settings
    account: LocalAccount
    store: Store
    chain: Chain
    fleets: FleetDirectory
    ingestor: Ingestor
    metrics: Metrics
    node: Node | None
    clock: Clock = time.time  # what 'now' is (settings.clock)

    @classmethod
    def build(
        cls, settings: Settings, run_worker: bool = True, wait_for_chain: float | None = None
    ):
        account = settings.load_account()
        redact.register_settings(settings, account)
        redact.install()
        if wait_for_chain is None:
            wait_for_chain = settings.chain_wait_seconds
        store = Store(settings.database_url)
        store.create_schema()
        chain = Chain(
            settings.rpc_url,
            settings.oracle_address,
            settings.artifacts_dir,
            settings.rpc_timeout_seconds,
        )
        deadline = time.monotonic() + wait_for_chain
        while True:  # the chain may come up after the node
            try:
                chain_id = chain.chain_id
                break
            except ChainUnavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        fleets = FleetDirectory(chain, settings.fleet_cache_seconds)
        metrics = Metrics()
        clock = make_clock(settings, chain)
        ingestor = Ingestor(
            store,
            fleets,
            chain_id,
            settings.oracle_address,
            account.address,
            settings.settle_seconds,
            settings.max_clock_skew_seconds,
            clock,
            rate_limit=OperatorRateLimit(settings.rate_limit_per_minute, settings.rate_limit_burst),
        )
        node = Node(settings, store, account, metrics, clock) if run_worker else None
        return cls(settings, account, store, chain, fleets, ingestor, metrics, node, clock)
