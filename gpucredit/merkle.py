"""Merkle trees of GPU leaves, byte for byte as `CollateralRegistry` checks them.

A batch of GPUs is registered on-chain as one Merkle root. Each GPU is a
`GpuLeaf`; its leaf hash is OpenZeppelin's double keccak of the ABI-encoded
record (`ICollateralRegistry.leafHash`), and the tree is built the way
OpenZeppelin's `StandardMerkleTree` builds it: leaf hashes sorted, laid out
in a complete binary tree stored as an array, each parent the keccak of its
two children in ascending order (the commutative hash `MerkleProof` uses).
A proof is the list of siblings from the leaf up to the root.

    leaves = [GpuLeaf(index=i, gpu_key=gpu_key("NVIDIA", serial), ...) ...]
    tree = MerkleTree(leaves)
    registry.registerBatch((issuer, tree.root, len(leaves), ...))
    for first, keys in key_chunks([leaf.gpu_key for leaf in leaves], 500):
        registry.registerGpus(batch_id, keys)
    registry.verifyGpu(batch_id, leaves[7].as_tuple(), tree.proof(7))

Leaf `i` must carry the key registered at index `i` (`registerGpus` in
order); `chunk_hash` is the hash the registry stores per chunk, which a
key-mismatch proof (`proveKeyMismatch`) opens with the chunk's keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from eth_abi import encode
from eth_utils import keccak

__all__ = [
    "GpuLeaf",
    "MerkleTree",
    "chunk_hash",
    "gpu_key",
    "hash_pair",
    "key_chunks",
    "leaf_hash",
    "text_id",
    "verify_proof",
]

_WORD = 32


def gpu_key(vendor: str, serial: str) -> bytes:
    """The registry's key of one GPU: `keccak256(abi.encode(vendor, serial))`."""
    return keccak(encode(["string", "string"], [vendor, serial]))


def text_id(text: str) -> bytes:
    """`keccak256(bytes(text))`: the bytes32 id of a model or site name."""
    return keccak(text=text)


def _uint_word(value: int, bits: int, name: str) -> bytes:
    if not 0 <= value < 1 << bits:
        raise ValueError(f"{name}={value} does not fit in uint{bits}")
    return value.to_bytes(_WORD, "big")


def _bytes32_word(value: bytes, name: str) -> bytes:
    if len(value) != _WORD:
        raise ValueError(f"{name} must be 32 bytes, got {len(value)}")
    return bytes(value)


@dataclass(frozen=True, slots=True)
class GpuLeaf:
    """One GPU as committed to in a batch's tree (`ICollateralRegistry.GpuLeaf`).

    Attributes:
        index: position in the batch, below the batch's count (uint32).
        gpu_key: `gpu_key(vendor, serial)`.
        model: bytes32 model id, e.g. `text_id("NVIDIA H100 SXM5 80GB")`.
        site_id: bytes32 id of the data-centre site.
        attestation_hash: hash of this GPU's attestation document.
        cost: purchase cost in stablecoin units (uint128).
        in_service_at: unix time the GPU went into service (uint40).

    The depreciation class is not the leaf's: it is the model's, in the
    registry's model registry.
    """

    index: int
    gpu_key: bytes
    model: bytes
    site_id: bytes
    attestation_hash: bytes
    cost: int
    in_service_at: int

    def encode(self) -> bytes:
        """`abi.encode` of the fields in struct order (seven 32-byte words)."""
        return b"".join(
            (
                _uint_word(self.index, 32, "index"),
                _bytes32_word(self.gpu_key, "gpu_key"),
                _bytes32_word(self.model, "model"),
                _bytes32_word(self.site_id, "site_id"),
                _bytes32_word(self.attestation_hash, "attestation_hash"),
                _uint_word(self.cost, 128, "cost"),
                _uint_word(self.in_service_at, 40, "in_service_at"),
            )
        )

    def as_tuple(self) -> tuple[int, bytes, bytes, bytes, bytes, int, int]:
        """The leaf as the struct tuple a contract call takes."""
        return (
            self.index,
            self.gpu_key,
            self.model,
            self.site_id,
            self.attestation_hash,
            self.cost,
            self.in_service_at,
        )


def leaf_hash(leaf: GpuLeaf) -> bytes:
    """`keccak256(bytes.concat(keccak256(abi.encode(leaf...))))`, as on-chain."""
    return keccak(keccak(leaf.encode()))


def key_chunks(keys: Sequence[bytes], size: int) -> list[tuple[int, list[bytes]]]:
    """`keys` cut into `registerGpus` chunks of at most `size`: (first index, keys)."""
    if size < 1:
        raise ValueError("a chunk holds at least one key")
    return [(first, list(keys[first : first + size])) for first in range(0, len(keys), size)]


def chunk_hash(first_index: int, keys: Sequence[bytes]) -> bytes:
    """`keccak256(abi.encodePacked(firstIndex, keys))`, as the registry stores it."""
    return keccak(first_index.to_bytes(_WORD, "big") + b"".join(bytes(k) for k in keys))


def hash_pair(a: bytes, b: bytes) -> bytes:
    """OpenZeppelin's commutative keccak: the smaller word first."""
    return keccak(a + b) if a < b else keccak(b + a)


def verify_proof(proof: Sequence[bytes], root: bytes, leaf: bytes) -> bool:
    """`MerkleProof.verify`: folds `proof` into `leaf` and compares with `root`."""
    node = leaf
    for sibling in proof:
        node = hash_pair(node, sibling)
    return node == root


class MerkleTree:
    """A StandardMerkleTree-shaped tree over `GpuLeaf`s.

    `proof(i)` and `leaf_hashes[i]` refer to `leaves[i]`, the order the
    leaves were given in; the tree itself is built over the sorted hashes,
    as OpenZeppelin's `StandardMerkleTree.of(..., {sortLeaves: true})` does,
    so the root does not depend on that order.
    """

    def __init__(self, leaves: Sequence[GpuLeaf]) -> None:
        if not leaves:
            raise ValueError("a Merkle tree needs at least one leaf")
        self.leaves: tuple[GpuLeaf, ...] = tuple(leaves)
        self.leaf_hashes: tuple[bytes, ...] = tuple(leaf_hash(leaf) for leaf in self.leaves)
        count = len(self.leaf_hashes)
        size = 2 * count - 1
        tree: list[bytes] = [b""] * size
        self._position: list[int] = [0] * count
        ordered = sorted(range(count), key=self.leaf_hashes.__getitem__)
        for rank, leaf_number in enumerate(ordered):
            position = size - 1 - rank
            tree[position] = self.leaf_hashes[leaf_number]
            self._position[leaf_number] = position
        for node in range(size - count - 1, -1, -1):
            tree[node] = hash_pair(tree[2 * node + 1], tree[2 * node + 2])
        self._tree = tree

    @property
    def root(self) -> bytes:
        """The 32-byte root to register."""
        return self._tree[0]

    def __len__(self) -> int:
        return len(self.leaves)

    def proof(self, i: int) -> list[bytes]:
        """Siblings from `leaves[i]` up to the root, for `MerkleProof.verify`."""
        node = self._position[i]
        path: list[bytes] = []
        while node > 0:
            sibling = node + 1 if node % 2 == 1 else node - 1
            path.append(self._tree[sibling])
            node = (node - 1) // 2
        return path
