"""The demo's year on anvil, for the indexer and web tests (brownie project loaded)."""

from __future__ import annotations

from typing import Any

SIGNER_KEYS = [f"0x{(0x1D3E0 + i):064x}" for i in range(4)]


def play() -> tuple[Any, dict[str, Any]]:
    """Plays gpucredit/story.py's year on fresh contracts; (year, audit manifest)."""
    from brownie import chain

    from gpucredit.story import play_year

    year = play_year(SIGNER_KEYS)
    core, deal = year.core, year.deal
    manifest = {
        "chain_id": chain.id,
        "start_block": year.start_block,
        "contracts": {
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
    return year, manifest


def fresh_web3() -> Any:
    from brownie import web3
    from web3 import Web3

    return Web3(Web3.HTTPProvider(web3.provider.endpoint_uri))
