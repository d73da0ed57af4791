"""The batch signature scheme: canonical JSON, EIP-712 digest, strict parsing."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from oracle import secp256k1
from oracle.batchsig import (
    batch_digest,
    batch_typed_data,
    canonical_json,
    domain_separator,
    payload_hash,
    recover_public_key,
    recover_signer,
    sign_batch,
    signed_by_key,
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


@settings(max_examples=30, deadline=None)
@given(
    secret=st.integers(1, N - 1),
    digest=st.binary(min_size=32, max_size=32),
    tamper=st.sampled_from(["none", "v", "r", "s", "digest", "key"]),
)
def test_fast_check_agrees_with_full_recovery(secret, digest, tamper):
    """oracle.secp256k1 accepts exactly the signatures whose recovery yields the key."""
    account = Account.from_key(secret.to_bytes(32, "big"))
    sig = bytearray(Account.unsafe_sign_hash(digest, account.key).signature)
    public_key = recover_public_key(digest, bytes(sig)).to_bytes()
    assert secp256k1.scalar_base_multiply(secret) == (
        int.from_bytes(public_key[:32], "big"),
        int.from_bytes(public_key[32:], "big"),
    )
    if tamper == "v":
        sig[64] = 55 - sig[64]
    elif tamper == "r":
        sig[31] ^= 1
    elif tamper == "s":
        sig[63] ^= 1
    elif tamper == "digest":
        digest = keccak(digest)
    elif tamper == "key":
        public_key = recover_public_key(keccak(digest), bytes(sig)).to_bytes()
    try:
        expected = recover_public_key(digest, bytes(sig)).to_bytes() == public_key
    except ValueError:
        expected = False
    try:
        fast = signed_by_key(digest, bytes(sig), public_key)
    except ValueError:
        fast = False
    assert fast == expected
    assert fast == (tamper == "none")


def test_point_arithmetic_edge_cases():
    g = secp256k1.G
    assert secp256k1.scalar_base_multiply(0) is None
    assert secp256k1.scalar_base_multiply(N) is None
    assert secp256k1.scalar_base_multiply(1) == g
    two_g = secp256k1._to_affine(secp256k1._add_affine((g[0], g[1], 1), g))  # doubling path
    assert two_g == secp256k1.scalar_base_multiply(2)
    minus_g = (g[0], secp256k1.P - g[1])
    assert secp256k1._add_affine((g[0], g[1], 1), minus_g)[2] == 0  # P + (-P) = infinity
    with pytest.raises(ValueError):
        secp256k1.public_key_table(b"\x01" * 64)
