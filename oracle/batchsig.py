"""Telemetry batch signatures: the canonical encoding an operator signs.

A batch is the JSON body of ``POST /v1/fleets/{fleetId}/telemetry``. The
operator signs it with the fleet's operator key as EIP-712 typed data::

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
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from eth_account import Account
from eth_keys.datatypes import PublicKey, Signature
from eth_keys.exceptions import BadSignature
from eth_utils import keccak, to_checksum_address

from oracle import secp256k1

DOMAIN_NAME = "gpucredit Oracle Telemetry"
DOMAIN_VERSION = "1"
BATCH_TYPE = "TelemetryBatch(uint256 fleetId,bytes32 batchId,bytes32 payloadHash)"
BATCH_TYPEHASH = keccak(text=BATCH_TYPE)
DOMAIN_TYPEHASH = keccak(
    text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
_SECP256K1_HALF_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141 // 2


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


def parse_signature(signature: bytes) -> Signature:
    """65 bytes r || s || v with v in {27, 28} (or {0, 1}) and a low s (EIP-2).

    Raises ValueError for anything else.
    """
    if len(signature) != 65:
        raise ValueError("a signature is 65 bytes")
    v = signature[64]
    if v >= 27:
        v -= 27
    if v not in (0, 1):
        raise ValueError("signature v must be 27 or 28")
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:64], "big")
    if not (r >= 1 and 1 <= s <= _SECP256K1_HALF_N):
        raise ValueError("signature r or s out of range (s must be low, EIP-2)")
    try:
        return Signature(vrs=(v, r, s))
    except BadSignature as exc:
        raise ValueError(str(exc)) from None


def recover_public_key(digest: bytes, signature: bytes) -> PublicKey:
    """The public key that signed ``digest``; ValueError if none can."""
    sig = parse_signature(signature)
    try:
        return sig.recover_public_key_from_msg_hash(digest)
    except BadSignature as exc:
        raise ValueError(str(exc)) from None


def recover_signer(digest: bytes, signature: bytes) -> str:
    """The checksummed address that signed ``digest``; ValueError if none can."""
    return to_checksum_address(recover_public_key(digest, signature).to_canonical_address())


def signed_by_key(digest: bytes, signature: bytes, public_key: bytes) -> bool:
    """Whether recovering ``signature`` over ``digest`` yields ``public_key`` (fast path,
    see oracle.secp256k1); ValueError for a malformed signature."""
    sig = parse_signature(signature)
    return secp256k1.signed_by(digest, sig.r, sig.s, sig.v, public_key)
