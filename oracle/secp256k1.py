"""Fast secp256k1 signature checks against a KNOWN public key.

Recovering a signer with eth_keys' pure-Python backend costs three variable
-base scalar multiplications (5-10 ms), the dominant cost of a telemetry push.
An operator signs every batch with the same key, so the service recovers the
operator's public key once (eth_keys), caches it, and afterwards checks

    R = (z / s) * G + (r / s) * Q,   R.x == r,   R.y parity == v

with fixed-base tables for both G and Q (8-bit windows: 32 mixed additions
per scalar), about 10x faster. The acceptance rule is exactly ECDSA public key
recovery's with recovery id ``v`` in {0, 1}: a signature passes here iff
recovering it yields Q. Whoever holds the key can only make it pass by signing.
"""

from __future__ import annotations

from functools import lru_cache

P = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
G = (
    0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798,
    0x483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8,
)
WINDOW_BITS = 8
WINDOWS = 256 // WINDOW_BITS
_INFINITY = (0, 1, 0)  # Jacobian (X, Y, Z) with Z == 0

Affine = tuple[int, int]
Jacobian = tuple[int, int, int]


def _double(p: Jacobian) -> Jacobian:
    x, y, z = p
    if z == 0 or y == 0:
        return _INFINITY
    ysq = y * y % P
    s = 4 * x * ysq % P
    m = 3 * x * x % P  # a == 0 on secp256k1
    nx = (m * m - 2 * s) % P
    ny = (m * (s - nx) - 8 * ysq * ysq) % P
    nz = 2 * y * z % P
    return nx, ny, nz


def _add_affine(p: Jacobian, q: Affine) -> Jacobian:
    """p + q with q affine (mixed addition), handling doubling and inverses."""
    x1, y1, z1 = p
    if z1 == 0:
        return q[0], q[1], 1
    x2, y2 = q
    z1z1 = z1 * z1 % P
    u2 = x2 * z1z1 % P
    s2 = y2 * z1 * z1z1 % P
    h = (u2 - x1) % P
    r = (s2 - y1) % P
    if h == 0:
        return _double(p) if r == 0 else _INFINITY
    hh = h * h % P
    hhh = h * hh % P
    v = x1 * hh % P
    nx = (r * r - hhh - 2 * v) % P
    ny = (r * (v - nx) - y1 * hhh) % P
    nz = z1 * h % P
    return nx, ny, nz


def _to_affine(p: Jacobian) -> Affine | None:
    x, y, z = p
    if z == 0:
        return None
    return _to_affine_finite(p)


def _to_affine_finite(p: Jacobian) -> Affine:
    x, y, z = p
    zinv = pow(z, -1, P)
    zinv2 = zinv * zinv % P
    return x * zinv2 % P, y * zinv2 * zinv % P


def _table(point: Affine) -> list[list[Affine]]:
    """table[i][j] = (j + 1) * 2**(8 i) * point, affine."""
    table = []
    base: Jacobian = (point[0], point[1], 1)
    for _ in range(WINDOWS):
        base_affine = _to_affine_finite(base)  # 2**(8 i) * point is never infinity
        row = [base_affine]
        acc = base
        for _ in range(2**WINDOW_BITS - 2):
            acc = _add_affine(acc, base_affine)
            row.append(_to_affine_finite(acc))  # j * 2**(8 i) * point, j < 256 << N
        table.append(row)
        for _ in range(WINDOW_BITS):
            base = _double(base)
    return table


@lru_cache(maxsize=1)
def _g_table() -> list[list[Affine]]:
    return _table(G)


@lru_cache(maxsize=256)
def public_key_table(public_key: bytes) -> list[list[Affine]]:
    """Precomputed multiples of a 64-byte uncompressed public key (x || y)."""
    x = int.from_bytes(public_key[:32], "big")
    y = int.from_bytes(public_key[32:], "big")
    if not (0 <= x < P and 0 <= y < P) or (y * y - x * x * x - 7) % P != 0:
        raise ValueError("not a point on secp256k1")
    return _table((x, y))


def _accumulate(acc: Jacobian, table: list[list[Affine]], k: int) -> Jacobian:
    i = 0
    while k:
        byte = k & 0xFF
        if byte:
            acc = _add_affine(acc, table[i][byte - 1])
        k >>= WINDOW_BITS
        i += 1
    return acc


def signed_by(digest: bytes, r: int, s: int, v: int, public_key: bytes) -> bool:
    """True iff recovering (r, s, v) over ``digest`` yields ``public_key``.

    ``r`` and ``s`` must already be in [1, N) and ``v`` in {0, 1}.
    """
    z = int.from_bytes(digest, "big") % N
    w = pow(s, -1, N)
    acc = _accumulate(_INFINITY, _g_table(), z * w % N)
    acc = _accumulate(acc, public_key_table(public_key), r * w % N)
    point = _to_affine(acc)
    return point is not None and point[0] == r and point[1] & 1 == v


def scalar_base_multiply(k: int) -> Affine | None:
    """k * G (for tests and key derivation checks)."""
    return _to_affine(_accumulate(_INFINITY, _g_table(), k % N))
