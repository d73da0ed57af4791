"""The transactions this node signed (its posting journal)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from oracle.api.deps import StoreDep
from oracle.models import MAX_FLEET_ID, PostingsOut, TxOut

router = APIRouter(prefix="/v1", tags=["transactions"])


@router.get(
    "/transactions",
    response_model=PostingsOut,
    summary="This node's transactions, newest first",
)
def transactions(
    store: StoreDep,
    fleet_id: Annotated[int | None, Query(ge=0, le=MAX_FLEET_ID)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> PostingsOut:
    """Every report, markMissed and closePeriod transaction, with its state
    (signed, sent, mined, reverted, dropped)."""
    return PostingsOut(
        transactions=[
            TxOut(
                fleet_id=row.fleet_id,
                period=row.period,
                action=row.action,
                state=row.state,
                nonce=row.nonce,
                tx_hash=row.tx_hash,
                attempts=row.attempts,
                error=row.error,
            )
            for row in store.all_txs(fleet_id, limit)
        ]
    )
