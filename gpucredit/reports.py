"""EIP-712 observations for the telemetry oracle (`contracts/oracle/TelemetryOracle.sol`).

Each oracle signer signs its own observation of a fleet period as typed data

    Observation(uint256 fleetId,uint32 period,uint40 periodStart,uint40 periodEnd,
                uint16 utilizationBps,uint16 uptimeBps,uint128 revenue)

in the domain {name: "gpucredit TelemetryOracle", version: "1", chainId,
verifyingContract}. `submitReport` wants at least `quorum` of them from
distinct signers, in any order (`order_by_signer` sorts them by address, which
nodes use so that every node posts the same bytes), and stores the lower median
of each field (`median`).

Fault rule (`quorum_rule_violation`): a fleet of n signers tolerates f lying
or silent signers when quorum = 2f + 1 and n >= 3f + 1; the contract refuses
anything else, and the term sheet and the CLI say why before a transaction is
sent. A note's term sheet also asks for f >= 1 (`NOTE_MIN_FAULT_BOUND`).

These helpers only encode, sign and recover; the protocol rules (bps <= 10,000,
signer membership, quorum) are enforced on-chain, so the tests can prove it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple, TypeVar

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_typing import ChecksumAddress
from eth_utils import to_checksum_address

DOMAIN_NAME = "gpucredit TelemetryOracle"
DOMAIN_VERSION = "1"
MAX_BPS = 10_000

OBSERVATION_TYPE: list[dict[str, str]] = [
    {"name": "fleetId", "type": "uint256"},
    {"name": "period", "type": "uint32"},
    {"name": "periodStart", "type": "uint40"},
    {"name": "periodEnd", "type": "uint40"},
    {"name": "utilizationBps", "type": "uint16"},
    {"name": "uptimeBps", "type": "uint16"},
    {"name": "revenue", "type": "uint128"},
]

EIP712_DOMAIN_TYPE: list[dict[str, str]] = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]

# secp256k1 group order; OpenZeppelin's ECDSA accepts only s <= n / 2.
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

T = TypeVar("T")


def fault_bound(quorum: int) -> int:
    """The f of a quorum 2f + 1 (rounding down: an even quorum breaks the rule)."""
    return (quorum - 1) // 2


NOTE_MIN_FAULT_BOUND = 1


def quorum_rule_violation(signers: int, quorum: int, min_fault_bound: int = 0) -> str | None:
    """Why `signers` with `quorum` breaks the oracle's fault rule, or None.

    The same checks as `TelemetryOracle._validateSigners` (QuorumRuleBroken):
    quorum = 2f + 1 (odd) and n >= 3f + 1, so that f liars cannot carry the
    median past the honest values and f silent signers still leave a quorum;
    plus f >= `min_fault_bound` (a note asks for 1).
    """
    if signers > 16:
        return f"at most 16 signers, got {signers}"
    if quorum < 2 * min_fault_bound + 1:
        return (
            f"quorum {quorum} tolerates no lying or silent signer: a note's oracle needs "
            f"f >= {min_fault_bound}, so a quorum 2f + 1 of at least {2 * min_fault_bound + 1} "
            f"and at least {3 * min_fault_bound + 1} signers"
        )
    if quorum % 2 == 0:
        return f"quorum {quorum} is even: the quorum must be 2f + 1 (3 for f = 1, 5 for f = 2, ...)"
    f = fault_bound(quorum)
    if signers < 3 * f + 1:
        return (
            f"quorum {quorum} means f = {f} tolerated lying or silent signers, which needs "
            f"at least 3f + 1 = {3 * f + 1} signers, got {signers}"
        )
    return None


class SignedObservation(NamedTuple):
    """One signer's observation, shaped like `ITelemetryOracle.SignedObservation`.

    A tuple, so a list of them can be passed to `submitReport` as is.
    """

    utilization_bps: int
    uptime_bps: int
    revenue: int
    signature: bytes


def period_bounds(genesis: int, period_length: int, period: int) -> tuple[int, int]:
    """Start and end (unix seconds) of `period`, as the contract computes them.

    start = genesis + period * period_length; end = start + period_length.
    """
    start = genesis + period * period_length
    return start, start + period_length


def observation_typed_data(
    chain_id: int,
    oracle_address: str,
    fleet_id: int,
    period: int,
    period_start: int,
    period_end: int,
    utilization_bps: int,
    uptime_bps: int,
    revenue: int,
) -> dict[str, Any]:
    """The EIP-712 full message (types, primaryType, domain, message) of an observation.

    Suitable for `eth_account.messages.encode_typed_data(full_message=...)` and for
    `eth_signTypedData_v4`.
    """
    return {
        "types": {"EIP712Domain": EIP712_DOMAIN_TYPE, "Observation": OBSERVATION_TYPE},
        "primaryType": "Observation",
        "domain": {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": chain_id,
            "verifyingContract": to_checksum_address(oracle_address),
        },
        "message": {
            "fleetId": fleet_id,
            "period": period,
            "periodStart": period_start,
            "periodEnd": period_end,
            "utilizationBps": utilization_bps,
            "uptimeBps": uptime_bps,
            "revenue": revenue,
        },
    }


def sign_observation(
    private_key: bytes | str | int,
    chain_id: int,
    oracle_address: str,
    fleet_id: int,
    period: int,
    period_start: int,
    period_end: int,
    utilization_bps: int,
    uptime_bps: int,
    revenue: int,
) -> bytes:
    """Signs an observation; returns the 65-byte signature r || s || v (v in {27, 28}).

    eth_account produces canonical low-s signatures, the only kind the contract takes.
    """
    full_message = observation_typed_data(
        chain_id,
        oracle_address,
        fleet_id,
        period,
        period_start,
        period_end,
        utilization_bps,
        uptime_bps,
        revenue,
    )
    signed = Account.sign_typed_data(private_key, full_message=full_message)
    return bytes(signed.signature)


def recover_observation_signer(
    signature: bytes,
    chain_id: int,
    oracle_address: str,
    fleet_id: int,
    period: int,
    period_start: int,
    period_end: int,
    utilization_bps: int,
    uptime_bps: int,
    revenue: int,
) -> ChecksumAddress:
    """The address that signed this observation.

    Applies the contract's (OpenZeppelin ECDSA) rules first and raises ValueError
    for a signature the contract would reject as SignatureInvalid: a length other
    than 65 bytes, v not 27 or 28, or a high s (s > n / 2).
    """
    signature = bytes(signature)
    if len(signature) != 65:
        raise ValueError(f"signature must be 65 bytes, got {len(signature)}")
    s = int.from_bytes(signature[32:64], "big")
    if s > SECP256K1_N // 2:
        raise ValueError("signature s is in the upper half order (malleable)")
    if signature[64] not in (27, 28):
        raise ValueError(f"signature v must be 27 or 28, got {signature[64]}")
    full_message = observation_typed_data(
        chain_id,
        oracle_address,
        fleet_id,
        period,
        period_start,
        period_end,
        utilization_bps,
        uptime_bps,
        revenue,
    )
    return Account.recover_message(
        encode_typed_data(full_message=full_message), signature=signature
    )


def order_by_signer(signed: Iterable[tuple[str, T]]) -> list[T]:
    """Orders `(signer_address, observation)` pairs canonically for `submitReport`.

    Returns the observations sorted by ascending signer address (as a 160-bit
    number, so checksum case does not matter): the contract takes any order,
    and a canonical one makes every node post the same bytes. Raises ValueError
    on a duplicate signer, which the contract would reject as SignerRepeated.
    """
    keyed = sorted(((int(address, 16), item) for address, item in signed), key=lambda p: p[0])
    for (previous, _), (current, _) in zip(keyed, keyed[1:], strict=False):
        if previous == current:
            raise ValueError(f"duplicate signer {to_checksum_address(current.to_bytes(20, 'big'))}")
    return [item for _, item in keyed]


def median(values: Sequence[int]) -> int:
    """The contract's median: the lower median, element (n - 1) // 2 of the sorted values."""
    if not values:
        raise ValueError("median of no values")
    return sorted(values)[(len(values) - 1) // 2]
