"""Unit tests of the telemetry oracle (`contracts/oracle/TelemetryOracle.sol`).

Oracle signers are brownie local accounts with known keys, so observations are
signed in Python with `gpucredit.reports` exactly as an oracle node signs them.
Fleet 1 starts one period and an hour before deployment: period 0 has ended
and is not stale yet; period 1 ends about 30 days later.
"""

import random

import brownie
import pytest
from brownie import ZERO_ADDRESS, chain, web3
from eth_account.messages import encode_typed_data
from eth_utils import keccak

from gpucredit.reports import (
    SECP256K1_N,
    SignedObservation,
    median,
    observation_typed_data,
    order_by_signer,
    period_bounds,
    recover_observation_signer,
    sign_observation,
)

FLEET = 1
PERIOD = 30 * 86_400
HEARTBEAT = 3 * 86_400
QUORUM = 3
FLEET_ADMIN_ROLE = keccak(text="FLEET_ADMIN_ROLE")
DEFAULT_ADMIN_ROLE = bytes(32)
REPORTED, MISSED = 1, 2
SIGNER_CHANGE_DELAY = 2 * 86_400


def typed_error(name, *args):
    """A custom error as brownie 1.22 renders it: `Name: arg, arg` (addresses lower case)."""

    def render(arg):
        if hasattr(arg, "address"):
            arg = arg.address
        if isinstance(arg, str) and arg.startswith("0x") and len(arg) == 42:
            return arg.lower()
        return str(arg)

    return f"{name}: {', '.join(render(arg) for arg in args)}"


def set_next_timestamp(timestamp):
    """The next mined block (and so the next transaction) gets exactly `timestamp`."""
    web3.provider.make_request("evm_setNextBlockTimestamp", [timestamp])


def mine_at(timestamp):
    web3.provider.make_request("evm_mine", [timestamp])


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def admin(accounts):
    return accounts[0]


@pytest.fixture(scope="module")
def fleet_admin(accounts):
    return accounts[1]


@pytest.fixture(scope="module")
def operator(accounts):
    return accounts[2]


@pytest.fixture(scope="module")
def rando(accounts):
    return accounts[3]


@pytest.fixture(scope="module")
def consumer(accounts):
    """Stands in for the note's servicer."""
    return accounts[4]


@pytest.fixture(scope="module")
def signers(accounts):
    """Six local signer accounts with known keys, by ascending address."""
    added = [accounts.add(keccak(text=f"gpucredit oracle signer {i}")) for i in range(6)]
    return sorted(added, key=lambda account: int(account.address, 16))


@pytest.fixture(scope="module")
def fleet_signers(signers):
    """The fleet's registered 5 signers; `signers[5]` stays an outsider."""
    return signers[:5]


@pytest.fixture(scope="module")
def outsider(signers):
    return signers[5]


@pytest.fixture(scope="module")
def oracle(TelemetryOracle, admin, fleet_admin):
    contract = TelemetryOracle.deploy(admin, {"from": admin})
    contract.grantRole(FLEET_ADMIN_ROLE, fleet_admin, {"from": admin})
    return contract


@pytest.fixture(scope="module")
def genesis(oracle, fleet_admin, operator, consumer, fleet_signers):
    start = web3.eth.get_block("latest").timestamp - PERIOD - 3_600
    oracle.registerFleet(
        FLEET,
        operator,
        consumer,
        start,
        PERIOD,
        HEARTBEAT,
        fleet_signers,
        QUORUM,
        {"from": fleet_admin},
    )
    return start


@pytest.fixture(autouse=True)
def isolation(fn_isolation):
    pass


# ---------------------------------------------------------------- helpers


@pytest.fixture
def observe(oracle, genesis):
    """observe(signer, period, utilization, uptime, revenue, **domain) -> (address, obs)."""

    def sign(signer, period, utilization, uptime, revenue, chain_id=None, verifying=None):
        start, end = period_bounds(genesis, PERIOD, period)
        signature = sign_observation(
            signer.private_key,
            chain.id if chain_id is None else chain_id,
            oracle.address if verifying is None else verifying,
            FLEET,
            period,
            start,
            end,
            utilization,
            uptime,
            revenue,
        )
        return signer.address, SignedObservation(utilization, uptime, revenue, signature)

    return sign


@pytest.fixture
def honest(observe, fleet_signers):
    """Signed observations of `period` by fleet signers 0..count-1, ascending."""

    def build(period, count=QUORUM, values=None):
        values = values or [(8_000 + 100 * i, 9_900 - 10 * i, 1_000_000 + i) for i in range(count)]
        return order_by_signer(
            observe(signer, period, *value)
            for signer, value in zip(fleet_signers[: len(values)], values, strict=True)
        )

    return build


def warp_past_end(genesis, period, extra=1):
    _, end = period_bounds(genesis, PERIOD, period)
    mine_at(max(end + extra, web3.eth.get_block("latest").timestamp + 1))


def change_signers(oracle, fleet_admin, signer_set, quorum, fleet=FLEET):
    """Queues a signer-set change, waits out the delay and executes it."""
    oracle.queueSignerChange(fleet, signer_set, quorum, {"from": fleet_admin})
    chain.sleep(SIGNER_CHANGE_DELAY)
    return oracle.executeSignerChange(fleet, {"from": fleet_admin})


# ---------------------------------------------------------------- deployment and views


def test_constructor_grants_admin_both_roles(oracle, admin, fleet_admin):
    assert oracle.FLEET_ADMIN_ROLE() == "0x" + FLEET_ADMIN_ROLE.hex()
    assert oracle.hasRole(DEFAULT_ADMIN_ROLE, admin)
    assert oracle.hasRole(FLEET_ADMIN_ROLE, admin)
    assert oracle.hasRole(FLEET_ADMIN_ROLE, fleet_admin)
    assert not oracle.hasRole(DEFAULT_ADMIN_ROLE, fleet_admin)


def test_register_fleet_stores_config_and_emits(
    TelemetryOracle, admin, operator, consumer, fleet_signers
):
    oracle = TelemetryOracle.deploy(admin, {"from": admin})
    tx = oracle.registerFleet(
        7, operator, consumer, 1_000, PERIOD, HEARTBEAT, fleet_signers, QUORUM, {"from": admin}
    )
    assert list(tx.events["FleetRegistered"].values()) == [
        7,
        operator,
        consumer,
        1_000,
        PERIOD,
        HEARTBEAT,
    ]
    assert list(tx.events["SignersChanged"].values()) == [7, fleet_signers, QUORUM, 1]
    # ... quorum, nextPeriod, signerVersion, n = 5 signers, f = 1
    assert tuple(oracle.fleet(7)) == (
        operator,
        consumer,
        1_000,
        PERIOD,
        HEARTBEAT,
        QUORUM,
        0,
        1,
        5,
        1,
    )
    assert list(oracle.signers(7)) == fleet_signers
    assert tuple(oracle.periodBounds(7, 2)) == (1_000 + 2 * PERIOD, 1_000 + 3 * PERIOD)


def test_register_fleet_twice_reverts(oracle, genesis, fleet_admin, operator, consumer, signers):
    with brownie.reverts(typed_error("FleetExists", FLEET)):
        oracle.registerFleet(
            FLEET, operator, consumer, 0, PERIOD, 0, signers[:1], 1, {"from": fleet_admin}
        )


@pytest.mark.parametrize(
    "case, reason",
    [
        ("operator", "operator is zero"),
        ("consumer", "consumer is zero"),
        ("period", "period length is zero"),
        ("seventeen", "more than 16 signers"),
        ("zero_signer", "signer is zero"),
        ("duplicate", "duplicate signer"),
    ],
)
def test_register_fleet_rejects_invalid_config(
    oracle, fleet_admin, operator, consumer, accounts, signers, case, reason
):
    args = {
        "operator": operator,
        "consumer": consumer,
        "period": PERIOD,
        "signers": signers[:4],
        "quorum": 3,
    }
    if case == "operator":
        args["operator"] = ZERO_ADDRESS
    elif case == "consumer":
        args["consumer"] = ZERO_ADDRESS
    elif case == "period":
        args["period"] = 0
    elif case == "seventeen":
        args["signers"] = [f"0x{i:040x}" for i in range(1, 18)]
    elif case == "zero_signer":
        args["signers"] = [signers[0], signers[1], ZERO_ADDRESS, signers[2]]
    elif case == "duplicate":
        args["signers"] = [signers[0], signers[1], signers[2], signers[0]]
    with brownie.reverts(typed_error("FleetConfigInvalid", reason)):
        oracle.registerFleet(
            9,
            args["operator"],
            args["consumer"],
            0,
            args["period"],
            HEARTBEAT,
            args["signers"],
            args["quorum"],
            {"from": fleet_admin},
        )


ODD = "quorum must be 2f + 1: odd"
ENOUGH_SIGNERS = "signers must be at least 3f + 1"


@pytest.mark.parametrize(
    "count, quorum, reason",
    [
        (3, 2, ODD),  # the 2-of-3 the review broke: one liar becomes the lower median
        (4, 0, ODD),
        (0, 1, ENOUGH_SIGNERS),
        (4, 4, ODD),
        (6, 4, ODD),
        (3, 3, ENOUGH_SIGNERS),  # f = 1 needs 4
        (5, 5, ENOUGH_SIGNERS),  # f = 2 needs 7: 3-of-5 only tolerates one colluder
        (6, 5, ENOUGH_SIGNERS),
        (9, 7, ENOUGH_SIGNERS),  # f = 3 needs 10
        (16, 13, ENOUGH_SIGNERS),  # f = 6 needs 19
    ],
)
def test_register_fleet_refuses_a_quorum_outside_the_fault_rule(
    oracle, fleet_admin, operator, consumer, count, quorum, reason
):
    members = [f"0x{i:040x}" for i in range(1, count + 1)]
    with brownie.reverts(typed_error("QuorumRuleBroken", count, quorum, reason)):
        oracle.registerFleet(
            9, operator, consumer, 0, PERIOD, HEARTBEAT, members, quorum, {"from": fleet_admin}
        )


@pytest.mark.parametrize(
    "count, quorum", [(1, 1), (3, 1), (4, 3), (6, 3), (7, 5), (10, 7), (16, 11), (16, 3)]
)
def test_register_fleet_accepts_every_quorum_inside_the_fault_rule(
    oracle, fleet_admin, operator, consumer, count, quorum
):
    members = [f"0x{i:040x}" for i in range(1, count + 1)]
    oracle.registerFleet(
        9, operator, consumer, 0, PERIOD, HEARTBEAT, members, quorum, {"from": fleet_admin}
    )
    config = oracle.fleet(9)
    assert (config["quorum"], config["signerCount"], config["faultBound"]) == (
        quorum,
        count,
        (quorum - 1) // 2,
    )
    assert len(oracle.signers(9)) == count


def test_unknown_fleet_reverts(oracle, rando, honest):
    error = typed_error("FleetUnknown", 99)
    with brownie.reverts(error):
        oracle.submitReport(99, 0, honest(0), {"from": rando})
    with brownie.reverts(error):
        oracle.markMissed(99, {"from": rando})
    for view, args in [
        (oracle.fleet, ()),
        (oracle.signers, ()),
        (oracle.report, (0,)),
        (oracle.periodBounds, (0,)),
        (oracle.isStale, ()),
        (oracle.observationDigest, (0, 1, 1, 1)),
    ]:
        with brownie.reverts(error):
            view(99, *args)
    assert not oracle.isSigner(99, rando)


def test_digest_matches_python_typed_data(oracle, genesis):
    start, end = period_bounds(genesis, PERIOD, 4)
    assert tuple(oracle.periodBounds(FLEET, 4)) == (start, end)
    message = observation_typed_data(
        chain.id, oracle.address, FLEET, 4, start, end, 7_500, 9_990, 123_456
    )
    signable = encode_typed_data(full_message=message)
    assert oracle.domainSeparator() == "0x" + signable.header.hex()
    digest = keccak(b"\x19\x01" + signable.header + signable.body)
    assert oracle.observationDigest(FLEET, 4, 7_500, 9_990, 123_456) == "0x" + digest.hex()


# ---------------------------------------------------------------- submitReport: happy paths


def test_report_3_of_5_stores_medians(oracle, genesis, rando, observe, fleet_signers):
    # Values deliberately not in signer order: each field's median is taken on its own.
    values = [(8_100, 9_950, 2_000_000), (7_900, 9_990, 1_500_000), (8_500, 9_900, 1_800_000)]
    observations = order_by_signer(
        observe(signer, 0, *value)
        for signer, value in zip(fleet_signers[: len(values)], values, strict=True)
    )
    tx = oracle.submitReport(FLEET, 0, observations[::-1], {"from": rando})  # any order
    print(f"submitReport 3-of-5 gasUsed: {tx.gas_used}")

    now = tx.timestamp
    assert tuple(oracle.report(FLEET, 0)) == (REPORTED, 8_100, 9_950, 1_800_000, now, 3)
    assert oracle.fleet(FLEET)[6] == 1  # nextPeriod
    start, end = period_bounds(genesis, PERIOD, 0)
    assert list(tx.events["ReportSubmitted"].values()) == [
        FLEET,
        0,
        start,
        end,
        8_100,
        9_950,
        1_800_000,
        3,
        rando,
    ]


def test_report_with_all_five_signers(oracle, rando, honest):
    values = [
        (6_000, 9_000, 10),
        (9_000, 9_100, 50),
        (7_000, 9_999, 20),
        (8_000, 9_500, 40),
        (10_000, 10_000, 30),
    ]
    tx = oracle.submitReport(FLEET, 0, honest(0, 5, values), {"from": rando})
    assert tuple(oracle.report(FLEET, 0)) == (REPORTED, 8_000, 9_500, 30, tx.timestamp, 5)


def test_even_count_takes_lower_median(oracle, rando, honest):
    values = [(7_000, 9_000, 400), (8_000, 9_800, 100), (9_000, 9_600, 300), (6_000, 9_700, 200)]
    tx = oracle.submitReport(FLEET, 0, honest(0, 4, values), {"from": rando})
    # Sorted: utilization 6000 7000 8000 9000, uptime 9000 9600 9700 9800, revenue 100..400:
    # element (4 - 1) // 2 = 1 of each.
    assert tuple(oracle.report(FLEET, 0)) == (REPORTED, 7_000, 9_600, 200, tx.timestamp, 4)
    assert median([7_000, 8_000, 9_000, 6_000]) == 7_000


@pytest.mark.parametrize("lie", ["high", "low"])
def test_lying_signer_cannot_move_median_past_honest_ones(
    oracle, rando, observe, fleet_signers, lie
):
    honest_values = [(8_000, 9_900, 1_000_000), (8_200, 9_950, 1_100_000)]
    liar_value = (10_000, 10_000, 2**128 - 1) if lie == "high" else (0, 0, 0)
    observations = order_by_signer(
        [
            observe(fleet_signers[0], 0, *honest_values[0]),
            observe(fleet_signers[1], 0, *liar_value),
            observe(fleet_signers[2], 0, *honest_values[1]),
        ]
    )
    oracle.submitReport(FLEET, 0, observations, {"from": rando})
    stored = oracle.report(FLEET, 0)
    expected = honest_values[1] if lie == "high" else honest_values[0]
    assert (stored[1], stored[2], stored[3]) == expected


def test_medians_match_python_reference(oracle, fleet_admin, operator, consumer, rando, signers):
    """5 signers, f = 1: periods 0..15 carry 3..5 random observations each, in any order."""
    rng = random.Random(20_240_601)
    start = web3.eth.get_block("latest").timestamp - 20 * PERIOD
    oracle.registerFleet(
        2, operator, consumer, start, PERIOD, PERIOD, signers[:5], 3, {"from": fleet_admin}
    )
    for period in range(16):
        begin, end = period_bounds(start, PERIOD, period)
        chosen = rng.sample(signers[:5], rng.randint(3, 5))
        values = [
            (rng.randint(0, 10_000), rng.randint(0, 10_000), rng.randint(0, 2**128 - 1))
            for _ in chosen
        ]
        observations = [
            SignedObservation(
                *value,
                sign_observation(
                    signer.private_key, chain.id, oracle.address, 2, period, begin, end, *value
                ),
            )
            for signer, value in zip(chosen, values, strict=True)
        ]
        tx = oracle.submitReport(2, period, observations, {"from": rando})
        expected = tuple(median([value[field] for value in values]) for field in range(3))
        assert tuple(oracle.report(2, period)) == (REPORTED, *expected, tx.timestamp, len(chosen))


def test_report_accepted_exactly_at_period_end(oracle, genesis, rando, honest):
    oracle.submitReport(FLEET, 0, honest(0), {"from": rando})
    _, end1 = period_bounds(genesis, PERIOD, 1)
    set_next_timestamp(end1)
    tx = oracle.submitReport(FLEET, 1, honest(1), {"from": rando})
    assert tx.timestamp == end1
    assert oracle.fleet(FLEET)[6] == 2


def test_bps_at_maximum_accepted(oracle, rando, honest):
    values = [(10_000, 10_000, 0)] * 3
    oracle.submitReport(FLEET, 0, honest(0, 3, values), {"from": rando})
    assert tuple(oracle.report(FLEET, 0))[1:3] == (10_000, 10_000)


# ---------------------------------------------------------------- submitReport: rejections


def test_below_quorum_reverts(oracle, rando, honest):
    with brownie.reverts(typed_error("QuorumNotMet", 2, QUORUM)):
        oracle.submitReport(FLEET, 0, honest(0, 2), {"from": rando})


def test_duplicate_signer_reverts(oracle, rando, observe, fleet_signers):
    first = observe(fleet_signers[0], 0, 8_000, 9_900, 1)[1]
    again = observe(fleet_signers[0], 0, 8_100, 9_900, 1)[1]
    other = observe(fleet_signers[1], 0, 8_000, 9_900, 1)[1]
    error = typed_error("SignerRepeated", fleet_signers[0])
    for order in ([first, again, other], [first, other, again], [other, again, first]):
        with brownie.reverts(error):
            oracle.submitReport(FLEET, 0, order, {"from": rando})


def test_signer_order_does_not_matter(oracle, rando, honest):
    observations = honest(0)
    observations[0], observations[1] = observations[1], observations[0]
    tx = oracle.submitReport(FLEET, 0, observations, {"from": rando})
    assert tuple(oracle.report(FLEET, 0)) == (REPORTED, 8_100, 9_890, 1_000_001, tx.timestamp, 3)


def test_unknown_signer_reverts(oracle, rando, observe, fleet_signers, outsider):
    observations = order_by_signer(
        [observe(signer, 0, 8_000, 9_900, 1) for signer in (*fleet_signers[:2], outsider)]
    )
    with brownie.reverts(typed_error("SignerUnknown", outsider)):
        oracle.submitReport(FLEET, 0, observations, {"from": rando})


def test_replayed_report_reverts(oracle, rando, honest):
    observations = honest(0)
    oracle.submitReport(FLEET, 0, observations, {"from": rando})
    with brownie.reverts(typed_error("PeriodNotNext", 0, 1)):
        oracle.submitReport(FLEET, 0, observations, {"from": rando})


def test_out_of_order_period_reverts(oracle, genesis, rando, honest):
    warp_past_end(genesis, 1)  # period 1 has ended too: only the order is wrong
    with brownie.reverts(typed_error("PeriodNotNext", 1, 0)):
        oracle.submitReport(FLEET, 1, honest(1), {"from": rando})


def test_future_period_reverts(oracle, genesis, rando, honest):
    oracle.submitReport(FLEET, 0, honest(0), {"from": rando})
    end = period_bounds(genesis, PERIOD, 1)[1]
    set_next_timestamp(end - 1)
    with brownie.reverts(typed_error("PeriodNotEnded", 1, end, end - 1)):
        oracle.submitReport(FLEET, 1, honest(1), {"from": rando})


@pytest.mark.parametrize("field, index", [("utilizationBps", 0), ("uptimeBps", 1)])
def test_bps_above_maximum_reverts(oracle, rando, observe, fleet_signers, field, index):
    values = [[8_000, 9_900, 1] for _ in range(3)]
    values[2][index] = 10_001
    observations = order_by_signer(
        observe(signer, 0, *value)
        for signer, value in zip(fleet_signers[: len(values)], values, strict=True)
    )
    with brownie.reverts(typed_error("ValueOutOfRange", field, 10_001, 10_000)):
        oracle.submitReport(FLEET, 0, observations, {"from": rando})


@pytest.mark.parametrize("field", ["utilization_bps", "uptime_bps", "revenue"])
def test_field_altered_after_signing_reverts(oracle, genesis, rando, honest, field):
    observations = honest(0)
    altered = observations[1]._replace(**{field: getattr(observations[1], field) + 1})
    observations[1] = altered
    start, end = period_bounds(genesis, PERIOD, 0)
    # The signature now recovers to some unrelated key.
    recovered = recover_observation_signer(
        altered.signature, chain.id, oracle.address, FLEET, 0, start, end, *altered[:3]
    )
    with brownie.reverts(typed_error("SignerUnknown", recovered)):
        oracle.submitReport(FLEET, 0, observations, {"from": rando})


@pytest.mark.parametrize("domain", ["chain_id", "verifying"])
def test_signature_from_another_domain_reverts(
    oracle, genesis, rando, observe, honest, fleet_signers, domain
):
    observations = honest(0, 2)
    if domain == "chain_id":
        foreign = observe(fleet_signers[2], 0, 8_000, 9_900, 1, chain_id=chain.id + 1)[1]
    else:
        foreign = observe(fleet_signers[2], 0, 8_000, 9_900, 1, verifying=rando.address)[1]
    observations.append(foreign)
    start, end = period_bounds(genesis, PERIOD, 0)
    # Under the oracle's own domain the signature recovers to an unrelated key.
    recovered = recover_observation_signer(
        foreign.signature, chain.id, oracle.address, FLEET, 0, start, end, *foreign[:3]
    )
    assert recovered != fleet_signers[2].address
    with brownie.reverts(typed_error("SignerUnknown", recovered)):
        oracle.submitReport(FLEET, 0, observations, {"from": rando})


def test_high_s_signature_reverts(oracle, genesis, rando, honest, fleet_signers):
    observations = honest(0)
    good = observations[2]
    r, s, v = good.signature[:32], int.from_bytes(good.signature[32:64], "big"), good.signature[64]
    malleated = r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])  # 27 <-> 28
    observations[2] = good._replace(signature=malleated)
    start, end = period_bounds(genesis, PERIOD, 0)
    with pytest.raises(ValueError, match="upper half"):
        recover_observation_signer(
            malleated, chain.id, oracle.address, FLEET, 0, start, end, *good[:3]
        )
    with brownie.reverts(typed_error("SignatureInvalid", 2)):
        oracle.submitReport(FLEET, 0, observations, {"from": rando})


@pytest.mark.parametrize("mangle", ["short", "long", "empty", "bad_v"])
def test_malformed_signature_reverts(oracle, rando, honest, mangle):
    observations = honest(0)
    signature = observations[1].signature
    signature = {
        "short": signature[:64],
        "long": signature + b"\x00",
        "empty": b"",
        "bad_v": signature[:64] + b"\x1d",
    }[mangle]
    observations[1] = observations[1]._replace(signature=signature)
    with brownie.reverts(typed_error("SignatureInvalid", 1)):
        oracle.submitReport(FLEET, 0, observations, {"from": rando})


# ---------------------------------------------------------------- staleness and markMissed


def test_stale_period_marked_missed_then_next_period_accepted(oracle, genesis, rando, honest):
    _, end0 = period_bounds(genesis, PERIOD, 0)
    assert not oracle.isStale(FLEET)
    set_next_timestamp(end0 + HEARTBEAT + 1)
    tx = oracle.markMissed(FLEET, {"from": rando})
    assert list(tx.events["ReportMissed"].values()) == [FLEET, 0, end0, end0 + HEARTBEAT]
    assert tuple(oracle.report(FLEET, 0)) == (MISSED, 0, 0, 0, end0 + HEARTBEAT + 1, 0)
    assert oracle.fleet(FLEET)[6] == 1
    assert not oracle.isStale(FLEET)

    with brownie.reverts(typed_error("PeriodNotNext", 0, 1)):
        oracle.submitReport(FLEET, 0, honest(0), {"from": rando})

    warp_past_end(genesis, 1)
    tx = oracle.submitReport(FLEET, 1, honest(1), {"from": rando})
    assert oracle.report(FLEET, 1)[0] == REPORTED
    assert oracle.fleet(FLEET)[6] == 2


def test_is_stale_only_after_heartbeat(oracle, genesis):
    _, end0 = period_bounds(genesis, PERIOD, 0)
    mine_at(end0 + HEARTBEAT)
    assert not oracle.isStale(FLEET)
    mine_at(end0 + HEARTBEAT + 1)
    assert oracle.isStale(FLEET)


@pytest.mark.parametrize("offset", [-HEARTBEAT - 1, 0])
def test_mark_missed_before_stale_reverts(oracle, genesis, rando, offset):
    _, end0 = period_bounds(genesis, PERIOD, 0)
    stale_at = end0 + HEARTBEAT
    now = max(stale_at + offset, web3.eth.get_block("latest").timestamp + 1)
    set_next_timestamp(now)
    with brownie.reverts(typed_error("PeriodNotStale", 0, stale_at, now)):
        oracle.markMissed(FLEET, {"from": rando})


def test_mark_missed_after_report_targets_next_period(oracle, genesis, rando, honest):
    oracle.submitReport(FLEET, 0, honest(0), {"from": rando})
    now = period_bounds(genesis, PERIOD, 0)[1] + HEARTBEAT + 1
    set_next_timestamp(now)
    _, end1 = period_bounds(genesis, PERIOD, 1)
    with brownie.reverts(typed_error("PeriodNotStale", 1, end1 + HEARTBEAT, now)):
        oracle.markMissed(FLEET, {"from": rando})


def test_late_report_accepted_until_marked_missed(oracle, genesis, rando, honest):
    _, end0 = period_bounds(genesis, PERIOD, 0)
    set_next_timestamp(end0 + HEARTBEAT + 10)
    tx = oracle.submitReport(FLEET, 0, honest(0), {"from": rando})
    # Accepted, but recordedAt exposes the lateness to the servicer.
    assert oracle.report(FLEET, 0)[4] == tx.timestamp > end0 + HEARTBEAT


# ---------------------------------------------------------------- signer set and operator


def test_signer_change_bumps_version_and_emits(oracle, genesis, fleet_admin, signers):
    new_set = [signers[5], signers[1], signers[2], signers[3]]
    queued = oracle.queueSignerChange(FLEET, new_set, 3, {"from": fleet_admin})
    eta = queued.timestamp + SIGNER_CHANGE_DELAY
    assert list(queued.events["SignerChangeQueued"].values()) == [FLEET, new_set, 3, eta]
    pending_set, quorum, pending_eta = oracle.pendingSignerChange(FLEET)
    assert (list(pending_set), quorum, pending_eta) == (new_set, 3, eta)
    assert oracle.fleet(FLEET)[7] == 1  # nothing changes before the delay
    assert oracle.isSigner(FLEET, signers[0])
    chain.sleep(SIGNER_CHANGE_DELAY)
    tx = oracle.executeSignerChange(FLEET, {"from": fleet_admin})
    assert list(tx.events["SignersChanged"].values()) == [FLEET, new_set, 3, 2]
    assert oracle.pendingSignerChange(FLEET)[2] == 0
    config = oracle.fleet(FLEET)
    assert (config[5], config[7], config[8], config[9]) == (3, 2, 4, 1)  # quorum, version, n, f
    assert list(oracle.signers(FLEET)) == new_set
    assert oracle.isSigner(FLEET, signers[5])
    assert oracle.isSigner(FLEET, signers[1])
    assert not oracle.isSigner(FLEET, signers[0])


def test_signer_change_validates_when_queued(oracle, genesis, fleet_admin, signers):
    four = signers[:4]
    with brownie.reverts(typed_error("FleetConfigInvalid", "duplicate signer")):
        oracle.queueSignerChange(FLEET, [*four[:3], four[0]], 3, {"from": fleet_admin})
    with brownie.reverts(typed_error("QuorumRuleBroken", 3, 2, ODD)):
        oracle.queueSignerChange(FLEET, four[:3], 2, {"from": fleet_admin})
    with brownie.reverts(typed_error("QuorumRuleBroken", 4, 4, ODD)):
        oracle.queueSignerChange(FLEET, four, 4, {"from": fleet_admin})
    with brownie.reverts(typed_error("QuorumRuleBroken", 3, 3, ENOUGH_SIGNERS)):
        oracle.queueSignerChange(FLEET, four[:3], 3, {"from": fleet_admin})
    with brownie.reverts(typed_error("FleetConfigInvalid", "signer is zero")):
        oracle.queueSignerChange(FLEET, [*four[:3], ZERO_ADDRESS], 3, {"from": fleet_admin})
    with brownie.reverts(typed_error("FleetUnknown", 99)):
        oracle.queueSignerChange(99, four, 3, {"from": fleet_admin})
    assert oracle.pendingSignerChange(FLEET)[2] == 0


def test_signer_change_waits_for_its_eta_and_can_be_cancelled(
    oracle, genesis, fleet_admin, signers
):
    with brownie.reverts(typed_error("SignerChangeNotQueued", FLEET)):
        oracle.executeSignerChange(FLEET, {"from": fleet_admin})
    queued = oracle.queueSignerChange(FLEET, signers[1:5], 3, {"from": fleet_admin})
    eta = queued.timestamp + SIGNER_CHANGE_DELAY
    set_next_timestamp(eta - 1)
    with brownie.reverts(typed_error("SignerChangeNotReady", FLEET, eta, eta - 1)):
        oracle.executeSignerChange(FLEET, {"from": fleet_admin})
    tx = oracle.cancelSignerChange(FLEET, {"from": fleet_admin})
    assert list(tx.events["SignerChangeCancelled"].values()) == [FLEET]
    pending_set, quorum, pending_eta = oracle.pendingSignerChange(FLEET)
    assert (list(pending_set), quorum, pending_eta) == ([], 0, 0)
    chain.sleep(SIGNER_CHANGE_DELAY)
    with brownie.reverts(typed_error("SignerChangeNotQueued", FLEET)):
        oracle.executeSignerChange(FLEET, {"from": fleet_admin})
    with brownie.reverts(typed_error("SignerChangeNotQueued", FLEET)):
        oracle.cancelSignerChange(FLEET, {"from": fleet_admin})
    assert oracle.fleet(FLEET)[7] == 1


def test_queueing_again_replaces_the_change_and_restarts_the_delay(
    oracle, genesis, fleet_admin, signers
):
    first = oracle.queueSignerChange(FLEET, signers[1:5], 3, {"from": fleet_admin})
    first_eta = first.timestamp + SIGNER_CHANGE_DELAY
    set_next_timestamp(first_eta - 60)
    again = oracle.queueSignerChange(FLEET, signers[2:6], 3, {"from": fleet_admin})
    eta = again.timestamp + SIGNER_CHANGE_DELAY
    set_next_timestamp(first_eta + 1)  # the first change would be due by now
    with brownie.reverts(typed_error("SignerChangeNotReady", FLEET, eta, first_eta + 1)):
        oracle.executeSignerChange(FLEET, {"from": fleet_admin})
    set_next_timestamp(eta)
    oracle.executeSignerChange(FLEET, {"from": fleet_admin})
    assert list(oracle.signers(FLEET)) == signers[2:6]
    assert oracle.fleet(FLEET)[5] == 3


def test_removed_signer_can_no_longer_sign(oracle, genesis, fleet_admin, rando, honest, signers):
    removed = signers[0]
    change_signers(oracle, fleet_admin, signers[1:5], QUORUM)
    assert not oracle.isSigner(FLEET, removed)
    with brownie.reverts(typed_error("SignerUnknown", removed)):
        oracle.submitReport(FLEET, 0, honest(0), {"from": rando})


def test_signer_readded_counts_again(oracle, genesis, fleet_admin, rando, honest, signers):
    change_signers(oracle, fleet_admin, signers[1:5], QUORUM)
    change_signers(oracle, fleet_admin, signers[:5], QUORUM)
    oracle.submitReport(FLEET, 0, honest(0), {"from": rando})
    assert oracle.fleet(FLEET)[7] == 3


def test_operator_change_waits_out_the_timelock(oracle, genesis, fleet_admin, operator, rando):
    with brownie.reverts(typed_error("FleetConfigInvalid", "operator is zero")):
        oracle.queueOperatorChange(FLEET, ZERO_ADDRESS, {"from": fleet_admin})
    with brownie.reverts(typed_error("FleetUnknown", 99)):
        oracle.queueOperatorChange(99, rando, {"from": fleet_admin})
    with brownie.reverts(typed_error("OperatorChangeNotQueued", FLEET)):
        oracle.executeOperatorChange(FLEET, {"from": fleet_admin})
    queued = oracle.queueOperatorChange(FLEET, rando, {"from": fleet_admin})
    eta = queued.timestamp + SIGNER_CHANGE_DELAY
    assert list(queued.events["OperatorChangeQueued"].values()) == [FLEET, rando, eta]
    assert tuple(oracle.pendingOperatorChange(FLEET)) == (rando, eta)
    assert oracle.fleet(FLEET)[0] == operator  # nodes keep accepting the old key meanwhile
    set_next_timestamp(eta - 1)
    with brownie.reverts(typed_error("OperatorChangeNotReady", FLEET, eta, eta - 1)):
        oracle.executeOperatorChange(FLEET, {"from": fleet_admin})
    set_next_timestamp(eta)
    tx = oracle.executeOperatorChange(FLEET, {"from": fleet_admin})
    assert list(tx.events["FleetOperatorChanged"].values()) == [FLEET, rando]
    assert oracle.fleet(FLEET)[0] == rando
    assert tuple(oracle.pendingOperatorChange(FLEET)) == (ZERO_ADDRESS, 0)
    with brownie.reverts(typed_error("OperatorChangeNotQueued", FLEET)):
        oracle.executeOperatorChange(FLEET, {"from": fleet_admin})


def test_operator_change_can_be_cancelled_and_requeued(
    oracle, genesis, fleet_admin, operator, rando, consumer
):
    first = oracle.queueOperatorChange(FLEET, rando, {"from": fleet_admin})
    first_eta = first.timestamp + SIGNER_CHANGE_DELAY
    set_next_timestamp(first_eta - 60)
    again = oracle.queueOperatorChange(FLEET, consumer, {"from": fleet_admin})
    eta = again.timestamp + SIGNER_CHANGE_DELAY
    set_next_timestamp(first_eta + 1)  # the first change would be due: the delay restarted
    with brownie.reverts(typed_error("OperatorChangeNotReady", FLEET, eta, first_eta + 1)):
        oracle.executeOperatorChange(FLEET, {"from": fleet_admin})
    tx = oracle.cancelOperatorChange(FLEET, {"from": fleet_admin})
    assert list(tx.events["OperatorChangeCancelled"].values()) == [FLEET]
    chain.sleep(SIGNER_CHANGE_DELAY)
    with brownie.reverts(typed_error("OperatorChangeNotQueued", FLEET)):
        oracle.executeOperatorChange(FLEET, {"from": fleet_admin})
    with brownie.reverts(typed_error("OperatorChangeNotQueued", FLEET)):
        oracle.cancelOperatorChange(FLEET, {"from": fleet_admin})
    assert oracle.fleet(FLEET)[0] == operator


# ---------------------------------------------------------------- access control


@pytest.mark.parametrize(
    "call, role",
    [
        ("registerFleet", FLEET_ADMIN_ROLE),
        ("queueSignerChange", FLEET_ADMIN_ROLE),
        ("executeSignerChange", FLEET_ADMIN_ROLE),
        ("cancelSignerChange", FLEET_ADMIN_ROLE),
        ("queueOperatorChange", FLEET_ADMIN_ROLE),
        ("executeOperatorChange", FLEET_ADMIN_ROLE),
        ("cancelOperatorChange", FLEET_ADMIN_ROLE),
        ("grantRole", DEFAULT_ADMIN_ROLE),
        ("revokeRole", DEFAULT_ADMIN_ROLE),
    ],
)
def test_rando_cannot_call_role_restricted_functions(
    oracle, genesis, rando, operator, consumer, signers, call, role
):
    args = {
        "registerFleet": (2, operator, consumer, 0, PERIOD, HEARTBEAT, signers[:4], 3),
        "queueSignerChange": (FLEET, signers[:4], 3),
        "executeSignerChange": (FLEET,),
        "cancelSignerChange": (FLEET,),
        "queueOperatorChange": (FLEET, rando),
        "executeOperatorChange": (FLEET,),
        "cancelOperatorChange": (FLEET,),
        "grantRole": (FLEET_ADMIN_ROLE, rando),
        "revokeRole": (FLEET_ADMIN_ROLE, operator),
    }[call]
    with brownie.reverts(typed_error("AccessControlUnauthorizedAccount", rando, role)):
        getattr(oracle, call)(*args, {"from": rando})


def test_anyone_may_submit_and_mark_missed(oracle, genesis, operator, honest):
    oracle.submitReport(FLEET, 0, honest(0), {"from": operator})
    mine_at(period_bounds(genesis, PERIOD, 1)[1] + HEARTBEAT + 1)
    oracle.markMissed(FLEET, {"from": operator})
    assert oracle.fleet(FLEET)[6] == 2


# ---------------------------------------------------------------- Python helpers


def test_order_by_signer_sorts_by_address_and_rejects_duplicates():
    low, high = (
        "0x00000000000000000000000000000000000000aB",
        "0xA000000000000000000000000000000000000000",
    )
    assert order_by_signer([(high, "h"), (low, "l")]) == ["l", "h"]
    with pytest.raises(ValueError, match="duplicate signer"):
        order_by_signer([(low, 1), (low.lower(), 2)])


def test_python_recover_round_trips(signers):
    args = (31_337, "0x" + "11" * 20, FLEET, 3, 100, 200, 8_000, 9_000, 5)
    signature = sign_observation(signers[0].private_key, *args)
    assert len(signature) == 65 and signature[64] in (27, 28)
    assert recover_observation_signer(signature, *args) == signers[0].address
    with pytest.raises(ValueError, match="65 bytes"):
        recover_observation_signer(signature[:64], *args)
