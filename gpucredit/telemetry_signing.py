"""Telemetry batch signing, the operator's side: the canonical encoding it signs.

A batch is the JSON body of ``POST /v1/fleets/{fleetId}/telemetry`` on an
oracle node. The operator signs it with the fleet's operator key as EIP-712
typed data::

    TelemetryBatch(uint256 fleetId,bytes32 batchId,bytes32 payloadHash)

in the domain ``{name: "gpucredit Oracle Telemetry", version: "1", chainId,
verifyingContract: <TelemetryOracle address>}`` (so a signature is bound to one
chain, one oracle deployment and one fleet), where

* ``batchId`` is the body's ``batch_id`` (32 bytes, chosen by the operator,
  unique per fleet: it is the replay key), and
* ``payloadHash = keccak256(canonical_json(body without "signature"))``.

``canonical_json`` is UTF-8 JSON with object keys sorted by code point, no
insignificant whitespace, non-ASCII characters written as themselves, and
only integers and strings as scalars (the schema rejects floats, so no number
formatting is ambiguous). It equals Python's
``json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``
and JavaScript's ``JSON.stringify`` of the key-sorted object. The hash is
taken over the body exactly as the client sent it (after JSON parsing), so
defaults the server fills in are never part of it.

The oracle node verifies with the same functions (``oracle.batchsig``).
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from eth_account import Account
from eth_utils import keccak

DOMAIN_NAME = "gpucredit Oracle Telemetry"
DOMAIN_VERSION = "1"
BATCH_TYPE = "TelemetryBatch(uint256 fleetId,bytes32 batchId,bytes32 payloadHash)"
BATCH_TYPEHASH = keccak(text=BATCH_TYPE)
DOMAIN_TYPEHASH = keccak(
    text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)


def canonical_json(obj: Any) -> bytes:
    """The canonical UTF-8 encoding described in the module docstring."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def payload_hash(body: dict[str, Any]) -> bytes:
    """keccak256 of the canonical JSON of ``body`` without its ``signature``."""
    return keccak(canonical_json({k: v for k, v in body.items() if k != "signature"}))


def domain_separator(chain_id: int, verifying_contract: str) -> bytes:
    return keccak(
        DOMAIN_TYPEHASH
        + keccak(text=DOMAIN_NAME)
        + keccak(text=DOMAIN_VERSION)
        + chain_id.to_bytes(32, "big")
        + bytes.fromhex(verifying_contract[2:]).rjust(32, b"\0")
    )


def batch_digest(domain_sep: bytes, fleet_id: int, batch_id: bytes, payload: bytes) -> bytes:
    """The EIP-712 digest ``keccak256(0x1901 || domainSeparator || structHash)``."""
    struct_hash = keccak(BATCH_TYPEHASH + fleet_id.to_bytes(32, "big") + batch_id + payload)
    return keccak(b"\x19\x01" + domain_sep + struct_hash)


def batch_typed_data(
    chain_id: int, verifying_contract: str, fleet_id: int, batch_id: bytes, payload: bytes
) -> dict[str, Any]:
    """The same message as EIP-712 JSON, for wallets (``eth_signTypedData_v4``)."""
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "TelemetryBatch": [
                {"name": "fleetId", "type": "uint256"},
                {"name": "batchId", "type": "bytes32"},
                {"name": "payloadHash", "type": "bytes32"},
            ],
        },
        "primaryType": "TelemetryBatch",
        "domain": {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": chain_id,
            "verifyingContract": verifying_contract,
        },
        "message": {"fleetId": fleet_id, "batchId": batch_id, "payloadHash": payload},
    }


def new_batch_id() -> str:
    return "0x" + secrets.token_hex(32)


def sign_batch(
    private_key: bytes | str,
    chain_id: int,
    verifying_contract: str,
    fleet_id: int,
    body: dict[str, Any],
) -> dict[str, Any]:
    """Returns ``body`` with its ``signature``: what an operator's client sends."""
    digest = batch_digest(
        domain_separator(chain_id, verifying_contract),
        fleet_id,
        bytes.fromhex(body["batch_id"][2:]),
        payload_hash(body),
    )
    signed = Account.unsafe_sign_hash(digest, private_key)
    return {**body, "signature": "0x" + signed.signature.hex()}
