"""Access-control matrix: every privileged function of every contract, called
by every actor that must not call it, reverts with exactly the right error.

The matrix is generated, not written out: `TABLE` says for every
state-changing function in each contract's ABI who may call it (a role, a
named party, nobody, or anyone); the actors' roles are read from the chain
and checked against `HOLDERS`; each (operation, forbidden actor) pair is an
`eth_call` whose revert data must equal the ABI encoding of the expected
error, arguments included. A new function missing from `TABLE`, a role held
by an unexpected actor, or a check that is missing or reverts differently
fails the suite. The case count goes to `build/security/access_control.json`
for `bench/security.py`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from brownie import chain, web3
from eth_abi import encode
from eth_utils import keccak

from gpucredit.protocol import (
    DAY,
    H100,
    USD,
    DealSpec,
    TrancheSpec,
    close_subscription,
    make_fleet,
    note_params,
    open_deal,
    pledge_fleet,
    register_batch,
    submit_report,
)

ADMIN = "DEFAULT_ADMIN_ROLE"
ACTORS = (
    "admin",
    "issuer",
    "operator",
    "attestor",
    "trustee",
    "lender",
    "fee_recipient",
    "rando",
    "servicer",  # the note's servicer contract, as a caller
    "factory",  # the note factory, as a caller
)
# Who holds each role after deployment and wiring (gpucredit.protocol).
HOLDERS = {
    "identities": {ADMIN: {"admin"}, "AGENT_ROLE": {"admin"}},
    "registry": {
        ADMIN: {"admin"},
        "VALUATION_ROLE": {"admin"},
        "NOTE_FACTORY_ROLE": {"factory"},
        "ISSUER_ROLE": {"issuer"},
        "OPERATOR_ROLE": {"operator"},
        "ATTESTOR_ROLE": {"attestor"},
    },
    "oracle": {ADMIN: {"admin"}, "FLEET_ADMIN_ROLE": {"admin"}},
    # the servicer's rights on its tranches are fixed by address, not roles
    "tranche": {ADMIN: {"issuer"}, "ISSUER_ROLE": {"issuer"}, "GUARDIAN_ROLE": {"issuer"}},
    "servicer": {},  # no admin, no roles: one trustee address
    "factory": {},
}
BUILD = {
    "identities": "IdentityRegistry",
    "registry": "CollateralRegistry",
    "oracle": "TelemetryOracle",
    "tranche": "NoteTranche",
    "servicer": "Servicer",
    "factory": "NoteFactory",
}
REPORT = Path(__file__).resolve().parents[2] / "build" / "security" / "access_control.json"


def role_id(name: str) -> bytes:
    return bytes(32) if name == ADMIN else keccak(text=name)


def error(signature: str, *args) -> bytes:
    """ABI encoding of a custom error: selector, then the arguments."""
    types = signature[signature.index("(") + 1 : -1]
    encoded = encode(types.split(","), list(args)) if types else b""
    return keccak(text=signature)[:4] + encoded


def unauthorized(role: str) -> Callable:
    return lambda ctx, caller: error(
        "AccessControlUnauthorizedAccount(address,bytes32)", caller, role_id(role)
    )


@dataclass(frozen=True)
class Rule:
    """Who may call: `role`, or `allowed` actors (empty: nobody); `expect`
    builds the revert data for a caller who may not."""

    role: str | None = None
    allowed: frozenset[str] = frozenset()
    expect: Callable | None = None
    anyone: bool = False


def by_role(role: str) -> Rule:
    return Rule(role=role, expect=unauthorized(role))


def only(*actors: str, expect: Callable) -> Rule:
    return Rule(allowed=frozenset(actors), expect=expect)


ANYONE = Rule(anyone=True)


@dataclass
class Ctx:
    """Addresses and ids the argument builders use."""

    accounts: dict[str, str]
    note_id: int
    spare_batch: int
    open_batch: int
    tranche: str
    trustee: str
    signers: list[str]
    note_params: tuple = ()


def _admin_rules(contract: str) -> dict[str, list[tuple[Callable, Rule]]]:
    """The role-administration functions of an AccessControlDefaultAdminRules contract:
    one operation per role for grantRole / revokeRole / renounceRole."""
    roles = HOLDERS[contract]
    pending = lambda ctx, caller: error("AccessControlInvalidDefaultAdmin(address)", caller)  # noqa: E731
    enforced = lambda ctx, caller: error("AccessControlEnforcedDefaultAdminRules()")  # noqa: E731
    delay = lambda ctx, caller: error("AccessControlEnforcedDefaultAdminDelay(uint48)", 0)  # noqa: E731
    confirm = lambda ctx, caller: error("AccessControlBadConfirmation()")  # noqa: E731
    admin_of = {name: ("TRUSTEE_ROLE" if name == "TRUSTEE_ROLE" else ADMIN) for name in roles}

    def holder(role):
        return lambda ctx: ctx.accounts[sorted(roles[role])[0]]

    rules: dict[str, list[tuple[Callable, Rule]]] = {
        "beginDefaultAdminTransfer": [(lambda ctx: (ctx.accounts["rando"],), by_role(ADMIN))],
        "cancelDefaultAdminTransfer": [(lambda ctx: (), by_role(ADMIN))],
        "changeDefaultAdminDelay": [(lambda ctx: (DAY,), by_role(ADMIN))],
        "rollbackDefaultAdminDelay": [(lambda ctx: (), by_role(ADMIN))],
        "acceptDefaultAdminTransfer": [(lambda ctx: (), only(expect=pending))],
        "grantRole": [],
        "revokeRole": [],
        "renounceRole": [],
    }
    for name in roles:
        rid = role_id(name)
        if name == ADMIN:
            # one default admin, moved in two steps only
            rules["grantRole"].append(
                (lambda ctx, rid=rid: (rid, ctx.accounts["rando"]), only(expect=enforced))
            )
            rules["revokeRole"].append(
                (lambda ctx, rid=rid, h=holder(name): (rid, h(ctx)), only(expect=enforced))
            )
            rules["renounceRole"].append(
                (lambda ctx, rid=rid, h=holder(name): (rid, h(ctx)), only(expect=delay))
            )
            continue
        rules["grantRole"].append(
            (lambda ctx, rid=rid: (rid, ctx.accounts["rando"]), by_role(admin_of[name]))
        )
        rules["revokeRole"].append(
            (lambda ctx, rid=rid, h=holder(name): (rid, h(ctx)), by_role(admin_of[name]))
        )
        rules["renounceRole"].append(
            (
                lambda ctx, rid=rid, h=holder(name): (rid, h(ctx)),
                only(*roles[name], expect=confirm),
            )
        )
    return rules


def _one(args, rule):
    return [(args, rule)]


def not_servicer(ctx, caller):
    return error("NotServicer(address)", caller)


def not_trustee(ctx, caller):
    return error("NotTrustee(address)", caller)


def already_initialized(ctx, caller):
    return error("AlreadyInitialized()")


TABLE: dict[str, dict[str, list[tuple[Callable, Rule]]]] = {
    "identities": {
        "registerIdentity": _one(
            lambda c: (c.accounts["rando"], 840, 2**40), by_role("AGENT_ROLE")
        ),
        "registerIdentities": _one(
            lambda c: ([c.accounts["rando"]], 840, 2**40), by_role("AGENT_ROLE")
        ),
        "removeIdentity": _one(lambda c: (c.accounts["lender"],), by_role("AGENT_ROLE")),
        "setFrozen": _one(lambda c: (c.accounts["lender"], True), by_role("AGENT_ROLE")),
    },
    "registry": {
        "openNote": _one(lambda c: (c.accounts["issuer"],), by_role("NOTE_FACTORY_ROLE")),
        "bindNote": _one(
            lambda c: (c.note_id, c.accounts["servicer"], [c.tranche], [c.accounts["operator"]]),
            by_role("NOTE_FACTORY_ROLE"),
        ),
        "releaseNote": _one(
            lambda c: (c.note_id,),
            only(expect=lambda c, caller: error("NoteNotRepaid(uint256)", c.note_id)),
        ),
        "transferLiens": _one(
            lambda c: (c.note_id, c.trustee),
            only(
                "servicer",
                expect=lambda c, caller: error(
                    "CallerNotNoteServicer(uint256,address)", c.note_id, caller
                ),
            ),
        ),
        "registerBatch": _one(
            lambda c: ((c.accounts["issuer"], b"\x01" * 32, 1, 1, H100, 1, b"\x00" * 32),),
            by_role("OPERATOR_ROLE"),
        ),
        "registerGpus": _one(
            lambda c: (c.open_batch, [b"\x07" * 32]),
            only(
                "operator",
                expect=lambda c, caller: error(
                    "CallerNotBatchOperator(uint256,address)", c.open_batch, caller
                ),
            ),
        ),
        "attestBatch": _one(lambda c: (c.spare_batch, b"\x04" * 32), by_role("ATTESTOR_ROLE")),
        "rejectBatch": _one(lambda c: (c.spare_batch,), by_role("ATTESTOR_ROLE")),
        "pledgeBatch": _one(
            lambda c: (c.spare_batch, c.note_id),
            only(
                "operator",
                expect=lambda c, caller: error(
                    "CallerNotBatchOperator(uint256,address)", c.spare_batch, caller
                ),
            ),
        ),
        "proveBadLeaf": _one(lambda c: (), ANYONE),
        "proveKeyMismatch": _one(lambda c: (), ANYONE),
        "setDepreciationClass": _one(lambda c: (1, 400, 0), by_role("VALUATION_ROLE")),
        "executeDepreciationClass": _one(lambda c: (1,), by_role("VALUATION_ROLE")),
        "cancelDepreciationClass": _one(lambda c: (1,), by_role("VALUATION_ROLE")),
        "setModel": _one(lambda c: (H100, 1, 100), by_role("VALUATION_ROLE")),
        "executeModel": _one(lambda c: (H100,), by_role("VALUATION_ROLE")),
        "cancelModel": _one(lambda c: (H100,), by_role("VALUATION_ROLE")),
    },
    "oracle": {
        "registerFleet": _one(
            lambda c: (99, c.accounts["operator"], c.accounts["rando"], 1, DAY, DAY, c.signers, 3),
            by_role("FLEET_ADMIN_ROLE"),
        ),
        "queueSignerChange": _one(lambda c: (c.note_id, c.signers, 3), by_role("FLEET_ADMIN_ROLE")),
        "executeSignerChange": _one(lambda c: (c.note_id,), by_role("FLEET_ADMIN_ROLE")),
        "cancelSignerChange": _one(lambda c: (c.note_id,), by_role("FLEET_ADMIN_ROLE")),
        "queueOperatorChange": _one(
            lambda c: (c.note_id, c.accounts["rando"]), by_role("FLEET_ADMIN_ROLE")
        ),
        "executeOperatorChange": _one(lambda c: (c.note_id,), by_role("FLEET_ADMIN_ROLE")),
        "cancelOperatorChange": _one(lambda c: (c.note_id,), by_role("FLEET_ADMIN_ROLE")),
        "submitReport": _one(lambda c: (), ANYONE),
        "markMissed": _one(lambda c: (), ANYONE),
    },
    "tranche": {
        "closeSubscription": _one(lambda c: (), by_role("ISSUER_ROLE")),
        "fulfil": _one(lambda c: ([c.accounts["lender"]],), by_role("ISSUER_ROLE")),
        "drawdown": _one(lambda c: (), by_role("ISSUER_ROLE")),
        # drawn: nobody, the issuer included, can cancel any more
        "cancelOffering": _one(
            lambda c: (), only(expect=lambda c, caller: error("StateIs(uint8,uint8)", 2, 1))
        ),
        "initialize": _one(
            lambda c: ("x", "x", c.accounts["rando"], c.accounts["rando"], c.terms, [], []),
            only(expect=already_initialized),
        ),
        "pay": _one(lambda c: (0, 0), only("servicer", expect=not_servicer)),
        "setRateStep": _one(lambda c: (-2_000,), only("servicer", expect=not_servicer)),
        "writeOff": _one(lambda c: (), only("servicer", expect=not_servicer)),
        "pause": _one(lambda c: (), by_role("GUARDIAN_ROLE")),
        "unpause": _one(lambda c: (), by_role("GUARDIAN_ROLE")),
        "requestDeposit": _one(lambda c: (), ANYONE),
        "cancelDepositRequest": _one(lambda c: (), ANYONE),
        "claimShares": _one(lambda c: (), ANYONE),
        "claimCoupon": _one(lambda c: (), ANYONE),
        "redeem": _one(lambda c: (), ANYONE),
        "transfer": _one(lambda c: (), ANYONE),
        "transferFrom": _one(lambda c: (), ANYONE),
        "approve": _one(lambda c: (), ANYONE),
    },
    "servicer": {
        "stepIn": _one(lambda c: (), only("trustee", expect=not_trustee)),
        "finishWindDown": _one(lambda c: (), only("trustee", expect=not_trustee)),
        "transferTrustee": _one(
            lambda c: (c.accounts["rando"],), only("trustee", expect=not_trustee)
        ),
        "initialize": _one(
            lambda c: (c.accounts["rando"], c.covenants), only(expect=already_initialized)
        ),
        "recordDefects": _one(lambda c: (), ANYONE),
        "withdraw": _one(
            lambda c: (),
            only(
                "fee_recipient",
                "operator",
                expect=lambda c, caller: error("NothingToWithdraw(address)", caller),
            ),
        ),
        "disburseCapital": _one(lambda c: (), ANYONE),  # pays the operator only
        "payRevenue": _one(lambda c: (), ANYONE),
        "postCashCollateral": _one(lambda c: (), ANYONE),
        "closePeriod": _one(lambda c: (), ANYONE),
        "cureTopUp": _one(lambda c: (), ANYONE),
        "declareDefault": _one(lambda c: (), ANYONE),
        "releaseCollateral": _one(lambda c: (), ANYONE),
    },
    "factory": {
        # the registry refuses a caller without its issuer role
        "createNote": _one(
            lambda c: (c.note_params,),
            only(
                "issuer",
                expect=lambda c, caller: error("IssuerRoleMissing(address)", caller),
            ),
        ),
    },
}
for _contract in ("identities", "registry", "oracle", "tranche"):
    TABLE[_contract].update(_admin_rules(_contract))


# ---------------------------------------------------------------- deployment


@pytest.fixture(scope="module")
def protocol(
    core, admin, issuer, operator, attestor, trustee, lenders, spv, rando, signers, signer_keys
):
    """A drawn note with one closed period (so fees and equity are withdrawable)
    and a spare attested batch that nobody pledged yet."""
    spec = DealSpec(tranches=[TrancheSpec("GPU Senior", "GPU-S", 0, 1_000_000 * USD, 450)])
    deal = open_deal(
        core,
        spec,
        admin=admin,
        issuer=issuer,
        operator=operator,
        trustee=trustee,
        fee_recipient=spv,
        signers=signers[:4],
    )
    now = chain[-1].timestamp
    pledge_fleet(core, deal, make_fleet(100, in_service_at=now - 1), issuer, operator, attestor)
    spare, _, _ = register_batch(
        core, issuer, operator, make_fleet(3, in_service_at=now - 1, serial_prefix="SPARE-")
    )
    core.registry.attestBatch(spare, b"\x05" * 32, {"from": attestor})
    header = (issuer, b"\x02" * 32, 2, 2, H100, now - 1, b"\x00" * 32)
    tx = core.registry.registerBatch(header, {"from": operator})
    open_batch = tx.events["BatchRegistered"]["batchId"]
    senior, lender = deal.senior, lenders[0]
    core.usd.approve(senior, 2**256 - 1, {"from": lender})
    senior.requestDeposit(1_000_000 * USD, lender, lender, {"from": lender})
    close_subscription(senior, issuer)
    senior.fulfil([lender], {"from": issuer})
    senior.drawdown({"from": issuer})
    senior.claimShares({"from": lender})
    core.usd.approve(deal.servicer, 2**256 - 1, {"from": operator})
    deal.servicer.payRevenue(400_000 * USD, {"from": operator})
    submit_report(
        core,
        deal,
        0,
        signer_keys[:3],
        utilization=9_500,
        uptime=9_990,
        revenue=400_000 * USD,
        sender=lender,
    )
    deal.servicer.closePeriod({"from": lender})
    assert deal.servicer.withdrawable(spv) > 0 and deal.servicer.withdrawable(operator) > 0
    contracts = {
        "identities": core.identities,
        "registry": core.registry,
        "oracle": core.oracle,
        "tranche": senior,
        "servicer": deal.servicer,
        "factory": core.factory,
    }
    accounts = {
        "admin": admin.address,
        "issuer": issuer.address,
        "operator": operator.address,
        "attestor": attestor.address,
        "trustee": trustee.address,
        "lender": lender.address,
        "fee_recipient": spv.address,
        "rando": rando.address,
        "servicer": deal.servicer.address,
        "factory": core.factory.address,
    }
    ctx = Ctx(
        accounts=accounts,
        note_id=deal.note_id,
        spare_batch=spare,
        open_batch=open_batch,
        tranche=senior.address,
        trustee=trustee.address,
        signers=[s.address for s in signers[:4]],
        note_params=note_params(
            spec, chain[-1].timestamp + DAY, operator=operator, fee_recipient=spv, trustee=trustee
        ),
    )
    ctx.terms = tuple(senior.terms())
    ctx.covenants = tuple(deal.servicer.covenantTerms())
    ctx.deal, ctx.core, ctx.signer_keys = deal, core, signer_keys[:4]
    return contracts, ctx


@pytest.fixture(scope="module")
def ctx(protocol):
    return protocol[1]


@pytest.fixture(scope="module")
def contracts(protocol):
    return protocol[0]


def _call(contract, caller: str, data: str) -> bytes | None:
    """Revert data of an eth_call from `caller`, or None if it succeeds."""
    response = web3.provider.make_request(
        "eth_call", [{"from": caller, "to": contract.address, "data": data}, "latest"]
    )
    if "error" not in response:
        return None
    data = response["error"].get("data") or "0x"
    if isinstance(data, dict):  # some nodes nest it
        data = data.get("data", "0x")
    return bytes.fromhex(data[2:])


def _operations():
    for contract, functions in TABLE.items():
        for name, variants in functions.items():
            for args, rule in variants:
                if not rule.anyone:
                    yield contract, name, args, rule


def _allowed(rule: Rule, contract: str) -> set[str]:
    if rule.role is not None:
        return set(HOLDERS[contract][rule.role])
    return set(rule.allowed)


# ---------------------------------------------------------------- tests


@pytest.mark.parametrize("contract", list(BUILD))
def test_table_covers_every_state_changing_function(contract, contracts):
    abi = contracts[contract].abi
    mutating = {
        item["name"]
        for item in abi
        if item["type"] == "function" and item["stateMutability"] not in ("view", "pure")
    }
    assert mutating == set(TABLE[contract]), "classify every new function in TABLE"


@pytest.mark.parametrize("contract", list(BUILD))
def test_roles_are_held_exactly_as_expected(contract, contracts, ctx):
    deployed = contracts[contract]
    roles = {
        item["name"]
        for item in deployed.abi
        if item["type"] == "function" and item["name"].endswith("_ROLE") and not item["inputs"]
    }
    assert roles == set(HOLDERS[contract])
    for role in roles:
        holders = {
            actor for actor in ACTORS if deployed.hasRole(role_id(role), ctx.accounts[actor])
        }
        assert holders == HOLDERS[contract][role], (contract, role)


def test_every_forbidden_caller_gets_the_right_error(contracts, ctx):
    failures, cases, operations = [], 0, 0
    for contract, name, args, rule in _operations():
        operations += 1
        deployed = contracts[contract]
        data = getattr(deployed, name).encode_input(*args(ctx))
        for actor in ACTORS:
            if actor in _allowed(rule, contract):
                continue
            cases += 1
            caller = ctx.accounts[actor]
            expected = rule.expect(ctx, caller)
            got = _call(deployed, caller, data)
            if got != expected:
                shown = "success" if got is None else "0x" + got.hex()
                failures.append(f"{contract}.{name} by {actor}: {shown}, want 0x{expected.hex()}")
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(
        json.dumps(
            {"access_control_cases": cases, "operations": operations, "actors": len(ACTORS)},
            indent=2,
        )
        + "\n"
    )
    assert not failures, "\n".join(failures)
    assert cases >= 700, cases


def test_every_allowed_caller_passes_the_check(contracts, ctx):
    """The other half: whoever may call does not meet the access error (the
    call may still revert for its own reasons, never for this one)."""
    for contract, name, args, rule in _operations():
        deployed = contracts[contract]
        data = getattr(deployed, name).encode_input(*args(ctx))
        for actor in _allowed(rule, contract):
            caller = ctx.accounts[actor]
            assert _call(deployed, caller, data) != rule.expect(ctx, caller), (contract, name)


# ---------------------------------------------------------------- outcomes
#
# The matrix above says who may call what. The promises are about outcomes:
# whatever the issuer (also the guardian), the operator, an admin of the
# shared contracts, or anyone calls, with whatever it may call, it never
# moves a lien, redirects capital, changes a committed term, stops a period
# close or locks cash. Each attacker sends every state-changing function of
# every contract (the table's arguments aim them at itself or at `rando`);
# then the wiring is compared and the next close and every payout must work.

ATTACKERS = ("issuer", "operator", "admin", "rando")


def _wiring(ctx) -> dict:
    registry, deal = ctx.core.registry, ctx.deal
    info = registry.noteInfo(deal.note_id)
    return {
        "note": (info[0], info[1], int(info[2]), info[3]),  # issuer, servicer, status, lienholder
        "tranches": tuple(registry.noteTranches(deal.note_id)),
        "operators": tuple(registry.noteOperators(deal.note_id)),
        "capital to": deal.senior.spv(),
        "terms": tuple(deal.senior.terms()),
        "schedule": tuple(tuple(x) for x in deal.senior.amortizationSchedule()),
        "covenants": tuple(deal.servicer.covenantTerms()),
        "trustee": deal.servicer.trustee(),
    }


def _attack(contracts, ctx, actor: str) -> int:
    """Sends every operation of TABLE from `actor`; returns how many succeeded."""
    sent = 0
    caller = ctx.accounts[actor]
    for contract, functions in TABLE.items():
        deployed = contracts[contract]
        for name, variants in functions.items():
            for args, _rule in variants:
                try:
                    data = getattr(deployed, name).encode_input(*args(ctx))
                except (TypeError, ValueError, AttributeError):
                    continue  # needs arguments only a real caller has (proofs, reports)
                response = web3.provider.make_request(
                    "eth_sendTransaction",
                    [{"from": caller, "to": deployed.address, "data": data, "gas": hex(3_000_000)}],
                )
                if "error" not in response:
                    receipt = web3.eth.wait_for_transaction_receipt(response["result"])
                    sent += receipt["status"] == 1
    return sent


@pytest.mark.parametrize("actor", ATTACKERS)
def test_no_role_moves_a_lien_redirects_capital_changes_a_term_stops_a_close_or_locks_cash(
    actor, contracts, ctx
):
    deal, core = ctx.deal, ctx.core
    registry = core.registry
    before = _wiring(ctx)
    liens = list(registry.noteInfo(deal.note_id)[5])
    succeeded = _attack(contracts, ctx, actor)
    assert succeeded > 0  # the attacker did act (pauses, claims, valuation proposals ...)
    assert _wiring(ctx) == before
    # every lien is still the note's (the operator may add collateral, never take it)
    assert all(tuple(registry.livePledgeOf(b)) == (True, deal.note_id) for b in liens)
    # the next close runs and pays the lender; every payout can still leave
    accounts = ctx.accounts
    core.usd.approve(deal.servicer, 2**256 - 1, {"from": accounts["operator"]})
    deal.servicer.payRevenue(400_000 * USD, {"from": accounts["operator"]})
    submit_report(
        core,
        deal,
        1,
        ctx.signer_keys,
        utilization=9_500,
        uptime=9_990,
        revenue=400_000 * USD,
        sender=accounts["lender"],
    )
    tx = deal.servicer.closePeriod({"from": accounts["rando"]})
    assert "PeriodClosed" in tx.events
    if deal.senior.couponClaimable(accounts["lender"]):
        deal.senior.claimCoupon({"from": accounts["lender"]})
    for who in ("fee_recipient", "operator"):
        if deal.servicer.withdrawable(accounts[who]):
            deal.servicer.withdraw({"from": accounts[who]})
    assert deal.senior.couponClaimable(accounts["lender"]) == 0
