"""The batch signature scheme: canonical JSON, EIP-712 digest, strict parsing."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_keys.backends import NativeECCBackend
from eth_keys.datatypes import Signature
from eth_keys.exceptions import BadSignature
from eth_utils import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from oracle.batchsig import (
    batch_digest,
    batch_typed_data,
    canonical_json,
    domain_separator,
    payload_hash,
    recover_public_key,
    recover_signer,
    sign_batch,
)

ORACLE = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
OPERATOR = Account.create()

json_values = st.recursive(
    st.none() | st.integers(-(2**70), 2**70) | st.text(max_size=8) | st.booleans(),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


def test_canonical_json_sorts_keys_and_drops_whitespace():
    assert canonical_json({"b": 1, "a": [2, {"d": "é", "c": None}]}) == (
        '{"a":[2,{"c":null,"d":"é"}],"b":1}'.encode()
    )


@settings(max_examples=60, deadline=None)
@given(
    fleet_id=st.integers(0, 2**256 - 1),
    batch_id=st.binary(min_size=32, max_size=32),
    chain_id=st.integers(1, 2**64),
    payload=st.dictionaries(st.text(max_size=6), json_values, max_size=4),
)
def test_digest_matches_eip712_reference(fleet_id, batch_id, chain_id, payload):
    p_hash = payload_hash(payload)
    ours = batch_digest(domain_separator(chain_id, ORACLE), fleet_id, batch_id, p_hash)
    reference = encode_typed_data(
        full_message=batch_typed_data(chain_id, ORACLE, fleet_id, batch_id, p_hash)
    )
    assert ours == keccak(b"\x19" + reference.version + reference.header + reference.body)


def test_signature_excludes_itself_and_binds_fleet_chain_and_contract():
    body = sign_batch(OPERATOR.key, 31337, ORACLE, 7, {"batch_id": "0x" + "11" * 32, "samples": []})
    sig = bytes.fromhex(body["signature"][2:])
    p_hash = payload_hash(body)
    assert p_hash == payload_hash({k: v for k, v in body.items() if k != "signature"})
    digest = batch_digest(domain_separator(31337, ORACLE), 7, b"\x11" * 32, p_hash)
    assert recover_signer(digest, sig) == OPERATOR.address
    for other in (
        batch_digest(domain_separator(31337, ORACLE), 8, b"\x11" * 32, p_hash),
        batch_digest(domain_separator(1, ORACLE), 7, b"\x11" * 32, p_hash),
        batch_digest(domain_separator(31337, "0x" + "22" * 20), 7, b"\x11" * 32, p_hash),
    ):
        assert recover_signer(other, sig) != OPERATOR.address


def test_malformed_signatures_are_refused():
    digest = b"\x01" * 32
    good = bytes(Account.unsafe_sign_hash(digest, OPERATOR.key).signature)
    r, s, v = good[:32], int.from_bytes(good[32:64], "big"), good[64]
    high_s = r + (N - s).to_bytes(32, "big") + bytes([55 - v])
    for bad in (good[:64], good + b"\0", good[:64] + b"\x05", high_s, b"\0" * 32 + good[32:]):
        with pytest.raises(ValueError):
            recover_signer(digest, bad)
    assert recover_signer(digest, good[:64] + bytes([v - 27])) == OPERATOR.address


def reference_recovery(digest: bytes, sig: bytes) -> bytes | None:
    """eth_keys' pure-Python recovery (an independent implementation), under the
    same acceptance rule (v in {27, 28}, 1 <= r < n, 1 <= s <= n / 2); None if
    it refuses."""
    v = sig[64] - 27 if sig[64] >= 27 else sig[64]
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big")
    if v not in (0, 1) or not (1 <= r < N and 1 <= s <= N // 2):
        return None
    try:
        signature = Signature(vrs=(v, r, s), backend=NativeECCBackend())
        return signature.recover_public_key_from_msg_hash(digest).to_bytes()
    except BadSignature:
        return None


@settings(max_examples=40, deadline=None)
@given(
    secret=st.integers(1, N - 1),
    digest=st.binary(min_size=32, max_size=32),
    tamper=st.sampled_from(["none", "v", "r", "s", "digest", "high_s", "r_n", "s_0"]),
)
def test_libsecp256k1_recovery_agrees_with_a_reference(secret, digest, tamper):
    """coincurve (libsecp256k1) recovers exactly the key eth_keys' pure-Python
    code recovers, and refuses exactly what it refuses; a tampered signature
    never yields the signer's key."""
    account = Account.from_key(secret.to_bytes(32, "big"))
    sig = bytearray(Account.unsafe_sign_hash(digest, account.key).signature)
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big")
    if tamper == "v":
        sig[64] = 55 - sig[64]
    elif tamper == "r":
        sig[31] ^= 1
    elif tamper == "s":
        sig[63] ^= 1
    elif tamper == "digest":
        digest = keccak(digest)
    elif tamper == "high_s":  # the same signature, malleated: refused (EIP-2)
        sig[32:64] = (N - s).to_bytes(32, "big")
        sig[64] = 55 - sig[64]
    elif tamper == "r_n":
        sig[:32] = (r + N if r + N < 2**256 else N).to_bytes(32, "big")
    elif tamper == "s_0":
        sig[32:64] = bytes(32)
    expected = reference_recovery(digest, bytes(sig))
    try:
        ours = recover_public_key(digest, bytes(sig))
    except ValueError:
        ours = None
    assert ours == expected
    signer_key = account._key_obj.public_key.to_bytes()
    assert (ours == signer_key) == (tamper == "none")
    if tamper == "none":
        assert recover_signer(digest, bytes(sig)) == account.address
