"""Service health: database, chain, worker."""

from __future__ import annotations

from fastapi import APIRouter

from oracle import __version__
from oracle.api.deps import ServicesDep
from oracle.errors import ChainUnavailable
from oracle.models import HealthOut

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthOut, summary="Service health")
def health(services: ServicesDep) -> HealthOut:
    """``ok`` when the database answers and the chain RPC answers; else ``degraded``."""
    database_ok = services.store.ping()
    block: int | None
    chain_id: int | None
    try:
        block = services.chain.block_number()
        chain_id = services.chain.chain_id
    except ChainUnavailable:
        block = chain_id = None
    healthy = database_ok and block is not None
    return HealthOut(
        status="ok" if healthy else "degraded",
        node=services.settings.node_name,
        signer=services.account.address,
        chain_id=chain_id,
        block_number=block,
        oracle_address=services.settings.oracle_address,
        database="ok" if database_ok else "error",
        chain="ok" if block is not None else "error",
        peers=services.settings.peers,
        worker_last_run=services.node.last_run if services.node else None,
        version=__version__,
    )
