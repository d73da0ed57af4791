"""Property: with n signers and fault bound f = (n - 1) // 3, whatever up to f
liars sign (0 and each field's maximum included), whichever quorum subset
anyone submits, in any order, every stored field lies within the honest
observations' range; and every (n, quorum) outside the rule is refused.

Runs against the real contract on anvil. Each example registers a fresh fleet,
so examples do not depend on each other. `make test` runs 15 and 20 examples;
`make fuzz` runs 200 of each (GPUCREDIT_PROPERTY_EXAMPLES).
"""

import itertools
import os

import brownie
import pytest
from brownie import chain, web3
from brownie.test import given
from eth_utils import keccak
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from gpucredit.reports import (
    SignedObservation,
    period_bounds,
    quorum_rule_violation,
    sign_observation,
)

PERIOD = 30 * 86_400
MAX_BPS = 10_000
MAX_REVENUE = 2**128 - 1
FIELD_MAX = (MAX_BPS, MAX_BPS, MAX_REVENUE)
FIELDS = ("utilizationBps", "uptimeBps", "revenue")
_fleet_ids = itertools.count(1)

_EXAMPLES = int(os.environ.get("GPUCREDIT_PROPERTY_EXAMPLES", "0"))  # 0: the CI size


@pytest.fixture(scope="module")
def admin(accounts):
    return accounts[0]


@pytest.fixture(scope="module")
def submitters(accounts):
    return list(accounts[:10])


@pytest.fixture(scope="module")
def members(accounts):
    return [accounts.add(keccak(text=f"fault property signer {i}")) for i in range(10)]


@pytest.fixture(scope="module")
def oracle(TelemetryOracle, admin):
    return TelemetryOracle.deploy(admin, {"from": admin})


def _lie(field):
    top = FIELD_MAX[field]
    return st.one_of(st.sampled_from([0, top]), st.integers(0, top))


def _honest(field):
    # strictly inside (0, max): a lie at 0 or at the maximum is then outside the honest range
    return st.integers(1, FIELD_MAX[field] - 1)


_lies = st.tuples(_lie(0), _lie(1), _lie(2))
_honest_values = st.tuples(_honest(0), _honest(1), _honest(2))


@st.composite
def scenarios(draw):
    n = draw(st.integers(4, 10))
    f = (n - 1) // 3
    liar_count = draw(st.one_of(st.just(f), st.integers(0, f)))  # mostly the worst case
    liars = draw(
        st.lists(st.integers(0, n - 1), min_size=liar_count, max_size=liar_count, unique=True)
    )
    honest_values = draw(st.lists(_honest_values, min_size=n, max_size=n))
    liar_values = {i: draw(_lies) for i in liars}
    size = draw(st.integers(2 * f + 1, n))
    # the liars submit their lies, filled up to `size` with honest observations
    honest_ids = [i for i in draw(st.permutations(range(n))) if i not in liar_values]
    chosen = draw(st.permutations(liars + honest_ids[: size - len(liars)]))  # in any order
    submitter = draw(st.integers(0, 9))
    return n, f, liars, honest_values, liar_values, list(chosen), submitter


@given(scenario=scenarios())
@settings(
    max_examples=_EXAMPLES or 15,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,  # up to 10 signers x three 16- to 128-bit values
        HealthCheck.too_slow,
    ],
)
def test_f_liars_cannot_move_a_stored_field(oracle, admin, members, submitters, scenario):
    n, f, liars, honest_values, liar_values, chosen, submitter = scenario
    fleet_id = next(_fleet_ids)
    genesis = web3.eth.get_block("latest").timestamp - PERIOD - 3_600
    signer_set = members[:n]
    oracle.registerFleet(
        fleet_id,
        admin,
        admin,
        genesis,
        PERIOD,
        PERIOD,
        [s.address for s in signer_set],
        2 * f + 1,
        {"from": admin},
    )
    start, end = period_bounds(genesis, PERIOD, 0)
    observations = []
    for i in chosen:
        values = liar_values.get(i, honest_values[i])
        signature = sign_observation(
            signer_set[i].private_key, chain.id, oracle.address, fleet_id, 0, start, end, *values
        )
        observations.append(SignedObservation(*values, signature))
    oracle.submitReport(fleet_id, 0, observations, {"from": submitters[submitter]})

    stored = oracle.report(fleet_id, 0)
    # the honest range: every honest signer's observation, submitted or not
    honest = [v for i, v in enumerate(honest_values) if i not in liar_values]
    for field, name in enumerate(FIELDS):
        values = [v[field] for v in honest]
        assert min(values) <= stored[name] <= max(values), (name, stored[name], values)
    assert stored["observations"] == len(chosen)


@st.composite
def _near_the_boundary(draw):
    """n within one of 3f + 1 and quorum within one of 2f + 1, for some f."""
    f = draw(st.integers(0, 5))
    count = draw(st.integers(max(0, 3 * f - 1), min(16, 3 * f + 2)))  # MAX_SIGNERS = 16
    return count, draw(st.integers(2 * f, 2 * f + 2))


_configurations = st.one_of(_near_the_boundary(), st.tuples(st.integers(0, 16), st.integers(0, 20)))


@given(configuration=_configurations)
@settings(
    max_examples=_EXAMPLES or 20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_a_configuration_outside_the_rule_is_refused(oracle, admin, configuration):
    count, quorum = configuration
    fleet_id = next(_fleet_ids)
    signer_set = [f"0x{i:040x}" for i in range(1, count + 1)]
    problem = quorum_rule_violation(count, quorum)
    broken = quorum % 2 == 0 or count < 3 * ((quorum - 1) // 2) + 1
    assert (problem is not None) == broken  # the CLI's check is the contract's rule
    if broken:
        with brownie.reverts():
            oracle.registerFleet(
                fleet_id, admin, admin, 0, PERIOD, 0, signer_set, quorum, {"from": admin}
            )
        with pytest.raises(brownie.exceptions.VirtualMachineError, match="QuorumRuleBroken"):
            oracle.registerFleet(
                fleet_id, admin, admin, 0, PERIOD, 0, signer_set, quorum, {"from": admin}
            )
    else:
        oracle.registerFleet(
            fleet_id, admin, admin, 0, PERIOD, 0, signer_set, quorum, {"from": admin}
        )
        config = oracle.fleet(fleet_id)
        assert (config["signerCount"], config["faultBound"]) == (count, (quorum - 1) // 2)
        assert count >= 3 * config["faultBound"] + 1 and quorum == 2 * config["faultBound"] + 1
