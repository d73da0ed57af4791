"""Issue 12, as the attacker: f lying signers cannot move a stored figure.

The review broke the oracle's promise twice on the contracts of the time:

1. the deployed 2-of-3: one lying signer reads an honest node's public
   observation, signs near-zero figures, submits the pair itself, and the
   report stores the liar's figures for every field;
2. a 3-of-5: two colluders pair their 98 % with one honest observation and
   replace an honest 54 %.

Both configurations claimed a fault tolerance they did not have. The contract
now takes the fault bound from the quorum (quorum = 2f + 1, f >= 1) and
refuses any signer set smaller than 3f + 1, so a fleet says how many liars it
tolerates, and within that bound no submission (any quorum, any order, any
submitter) moves a field outside the honest observations' range.
"""

import itertools

import brownie
import pytest
from brownie import chain, web3
from eth_utils import keccak

from gpucredit.reports import SignedObservation, period_bounds, sign_observation

PERIOD = 30 * 86_400
HEARTBEAT = 3 * 86_400
MAX_REVENUE = 2**128 - 1
FIELDS = ("utilizationBps", "uptimeBps", "revenue")


def typed_error(name, *args):
    return f"{name}: {', '.join(str(arg) for arg in args)}"


@pytest.fixture(scope="module")
def admin(accounts):
    return accounts[0]


@pytest.fixture(scope="module")
def attacker(accounts):
    return accounts[5]


@pytest.fixture(scope="module")
def members(accounts):
    """Seven signer accounts with known keys."""
    return [accounts.add(keccak(text=f"issue 12 oracle signer {i}")) for i in range(7)]


@pytest.fixture(scope="module")
def oracle(TelemetryOracle, admin):
    return TelemetryOracle.deploy(admin, {"from": admin})


@pytest.fixture(autouse=True)
def isolation(fn_isolation):
    pass


def _genesis():
    return web3.eth.get_block("latest").timestamp - PERIOD - 3_600


def _register(oracle, admin, fleet_id, signer_set, quorum, genesis):
    return oracle.registerFleet(
        fleet_id,
        admin,
        admin,
        genesis,
        PERIOD,
        HEARTBEAT,
        [s.address for s in signer_set],
        quorum,
        {"from": admin},
    )


def _observe(oracle, signer, fleet_id, genesis, values):
    start, end = period_bounds(genesis, PERIOD, 0)
    signature = sign_observation(
        signer.private_key, chain.id, oracle.address, fleet_id, 0, start, end, *values
    )
    return SignedObservation(*values, signature)


def _assert_within_honest(oracle, fleet_id, honest_values):
    stored = oracle.report(fleet_id, 0)
    for field, name in enumerate(FIELDS):
        honest = [v[field] for v in honest_values]
        assert min(honest) <= stored[name] <= max(honest), (name, stored[name], honest)


@pytest.mark.parametrize("lie", [(0, 0, 0), (10_000, 10_000, MAX_REVENUE)], ids=["low", "high"])
def test_single_liar_cannot_set_any_field(oracle, admin, attacker, members, lie):
    genesis = _genesis()
    # The deployed 2-of-3 claimed to survive one liar: an even quorum is no 2f + 1, refused.
    with brownie.reverts(typed_error("QuorumRuleBroken", 3, 2, "quorum must be 2f + 1: odd")):
        _register(oracle, admin, 1, members[:3], 2, genesis)
    with brownie.reverts(typed_error("QuorumRuleBroken", 3, 3, "signers must be at least 3f + 1")):
        _register(oracle, admin, 1, members[:3], 3, genesis)

    # One liar needs f = 1: four signers, quorum three.
    _register(oracle, admin, 1, members[:4], 3, genesis)
    assert (oracle.fleet(1)["signerCount"], oracle.fleet(1)["faultBound"]) == (4, 1)
    liar, honest_signers = members[0], members[1:4]
    honest_values = [
        (8_000, 9_950, 1_200_000),
        (8_150, 9_900, 1_250_000),
        (8_300, 9_990, 1_180_000),
    ]

    def signed(fleet_id):
        honest = [
            _observe(oracle, s, fleet_id, genesis, v)
            for s, v in zip(honest_signers, honest_values, strict=True)
        ]
        return honest, _observe(oracle, liar, fleet_id, genesis, lie)

    # The review's move: the liar's figures paired with one honest observation.
    honest, lying = signed(1)
    with brownie.reverts(typed_error("QuorumNotMet", 2, 3)):
        oracle.submitReport(1, 0, [lying, honest[0]], {"from": liar})

    # Every quorum that includes the lie, in every order, from the liar or a front-runner:
    # each attempt on a fresh fleet with the same signers.
    fleet_id = 100
    for pair in itertools.combinations(range(3), 2):
        for order in itertools.permutations([None, *pair]):
            for sender in (liar, attacker):
                fleet_id += 1
                _register(oracle, admin, fleet_id, members[:4], 3, genesis)
                honest, lying = signed(fleet_id)
                observations = [lying if i is None else honest[i] for i in order]
                oracle.submitReport(fleet_id, 0, observations, {"from": sender})
                _assert_within_honest(oracle, fleet_id, honest_values)


def test_two_colluders_cannot_replace_honest_utilization(oracle, admin, attacker, members):
    genesis = _genesis()
    # Two colluders need f = 2: quorum five of at least seven. Five signers cannot give it ...
    with brownie.reverts(typed_error("QuorumRuleBroken", 5, 5, "signers must be at least 3f + 1")):
        _register(oracle, admin, 2, members[:5], 5, genesis)
    # ... and the review's 3-of-5 says what it is: one tolerated liar, not two.
    _register(oracle, admin, 3, members[:5], 3, genesis)
    assert (oracle.fleet(3)["signerCount"], oracle.fleet(3)["faultBound"]) == (5, 1)

    _register(oracle, admin, 2, members, 5, genesis)
    assert (oracle.fleet(2)["signerCount"], oracle.fleet(2)["faultBound"]) == (7, 2)
    colluders, honest_signers = members[:2], members[2:]
    honest_values = [
        (5_400, 9_900, 900_000),
        (5_350, 9_920, 905_000),
        (5_450, 9_880, 910_000),
        (5_500, 9_950, 895_000),
        (5_380, 9_910, 902_000),
    ]

    def signed(fleet_id):
        honest = [
            _observe(oracle, s, fleet_id, genesis, v)
            for s, v in zip(honest_signers, honest_values, strict=True)
        ]
        lies = [
            _observe(oracle, s, fleet_id, genesis, (9_800, 10_000, MAX_REVENUE)) for s in colluders
        ]
        return honest, lies

    # The review's move: both colluders and one honest observation.
    honest, lies = signed(2)
    with brownie.reverts(typed_error("QuorumNotMet", 3, 5)):
        oracle.submitReport(2, 0, [*lies, honest[0]], {"from": colluders[0]})

    fleet_id = 200
    for trio in itertools.combinations(range(5), 3):
        for shuffle in (False, True):
            fleet_id += 1
            _register(oracle, admin, fleet_id, members, 5, genesis)
            honest, lies = signed(fleet_id)
            picked = [honest[i] for i in trio]
            order = (
                [picked[0], lies[1], picked[2], lies[0], picked[1]] if shuffle else [*lies, *picked]
            )
            tx = oracle.submitReport(fleet_id, 0, order, {"from": attacker})
            assert 5_350 <= tx.events["ReportSubmitted"]["utilizationBps"] <= 5_500
            _assert_within_honest(oracle, fleet_id, honest_values)
