"""Telemetry batch signatures, the node's side: strict parsing and recovery.

What an operator signs (the canonical JSON, the EIP-712 digest) is defined by
the client package, :mod:`gpucredit.telemetry_signing`, and re-exported here.
Recovery runs in libsecp256k1 through its maintained Python bindings
(``coincurve``), tens of microseconds a signature.

The acceptance rule is OpenZeppelin ECDSA's, the contract's: 65 bytes
``r || s || v`` with ``v`` in {27, 28} (or {0, 1}), ``1 <= r < n`` and a low
``s`` (``1 <= s <= n / 2``, EIP-2), and a recovery that yields a point.
"""

from __future__ import annotations

from coincurve import PublicKey
from eth_utils import keccak, to_checksum_address

from gpucredit.telemetry_signing import (
    BATCH_TYPE,
    BATCH_TYPEHASH,
    DOMAIN_NAME,
    DOMAIN_TYPEHASH,
    DOMAIN_VERSION,
    batch_digest,
    batch_typed_data,
    canonical_json,
    domain_separator,
    new_batch_id,
    payload_hash,
    sign_batch,
)

__all__ = [
    "BATCH_TYPE",
    "BATCH_TYPEHASH",
    "DOMAIN_NAME",
    "DOMAIN_TYPEHASH",
    "DOMAIN_VERSION",
    "batch_digest",
    "batch_typed_data",
    "canonical_json",
    "domain_separator",
    "new_batch_id",
    "parse_signature",
    "payload_hash",
    "recover_address",
    "recover_public_key",
    "recover_signer",
    "sign_batch",
]

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_N = SECP256K1_N // 2


def parse_signature(signature: bytes) -> bytes:
    """The 65-byte compact recoverable form ``r || s || recid`` of ``signature``.

    Raises ValueError unless ``signature`` is 65 bytes ``r || s || v`` with
    ``v`` in {27, 28} (or {0, 1}), ``1 <= r < n`` and ``1 <= s <= n / 2`` (EIP-2).
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
    if not (1 <= r < SECP256K1_N and 1 <= s <= _HALF_N):
        raise ValueError("signature r or s out of range (s must be low, EIP-2)")
    return signature[:64] + bytes([v])


def recover_public_key(digest: bytes, signature: bytes) -> bytes:
    """The 64-byte public key ``x || y`` that signed ``digest``; ValueError if none can."""
    compact = parse_signature(signature)
    try:
        point = PublicKey.from_signature_and_message(compact, digest, hasher=None)
    except ValueError:
        raise ValueError("no public key recovers from this signature") from None
    return point.format(compressed=False)[1:]


def recover_address(digest: bytes, signature: bytes) -> bytes:
    """The 20-byte address that signed ``digest``; ValueError if none can."""
    return keccak(recover_public_key(digest, signature))[12:]


def recover_signer(digest: bytes, signature: bytes) -> str:
    """The checksummed address that signed ``digest``; ValueError if none can."""
    return to_checksum_address(recover_address(digest, signature))
