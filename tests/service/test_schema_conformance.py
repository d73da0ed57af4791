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
from urllib.parse import quote

import httpx
import jsonschema
import pytest
from harness import sample, signed_batch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

DAY = 86_400


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


# ------------------------------------------------------------- conformance run

EXAMPLES_PER_OPERATION = 25  # small: the run is part of the ordinary test suite


def inline_refs(schema, components: dict):
    """``schema`` with every ``#/components/schemas/X`` replaced by X (no recursion here)."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if ref is not None:
            return inline_refs(components[ref.rsplit("/", 1)[1]], components)
        return {k: inline_refs(v, components) for k, v in schema.items()}
    if isinstance(schema, list):
        return [inline_refs(v, components) for v in schema]
    return schema


def operations(openapi: dict) -> list[tuple[str, str, dict]]:
    return [
        (method, path, op)
        for path, ops in sorted(openapi["paths"].items())
        for method, op in sorted(ops.items())
    ]


def parameter_values(param: dict, components: dict, known: dict[str, int]):
    """Values for one parameter: from its schema, a known good value, and values
    outside the schema (the service must answer those with a documented 4xx)."""
    schema = inline_refs(param["schema"], components)
    options = [from_schema(schema), st.integers(-(2**70), 2**70), st.text(max_size=4)]
    if param["name"] in known:
        options.append(st.just(known[param["name"]]))
    return st.one_of(*options)


def check_response(method: str, path: str, op: dict, response: httpx.Response, components):
    where = f"{method.upper()} {path} -> {response.status_code}: {response.text[:300]}"
    assert response.status_code < 500, where
    documented = op["responses"].get(str(response.status_code)) or op["responses"].get("default")
    assert documented is not None, f"undocumented status: {where}"
    content = documented.get("content", {})
    media = response.headers.get("content-type", "").split(";")[0]
    assert any(key.split(";")[0] == media for key in content), f"content type {media}: {where}"
    if media == "application/json":
        schema = inline_refs(content["application/json"]["schema"], components)
        errors = list(jsonschema.Draft202012Validator(schema).iter_errors(response.json()))
        assert not errors, f"{errors[0].message}: {where}"


@pytest.mark.parametrize(
    "method,path",
    [
        ("post", "/v1/fleets/{fleet_id}/telemetry"),
        ("get", "/v1/fleets/{fleet_id}/periods/current"),
        ("get", "/v1/fleets/{fleet_id}/periods/{period}"),
        ("get", "/v1/fleets/{fleet_id}/periods/{period}/observation"),
        ("get", "/v1/fleets/{fleet_id}/periods/{period}/observations"),
        ("get", "/v1/fleets/{fleet_id}/reports"),
        ("get", "/v1/transactions"),
        ("get", "/health"),
        ("get", "/metrics"),
    ],
)
def test_every_operation_conforms_to_its_schema(
    method, path, node, fleet, chain_id, oracle, openapi
):
    """Requests generated from the served schema (and values outside it) never get
    a 5xx; every answer's status and content type are documented for the
    operation and its body validates against the documented schema."""
    assert {(m, p) for m, p, _ in operations(openapi)} >= {(method, path)}
    op = openapi["paths"][path][method]
    components = openapi["components"]["schemas"]
    known = {"fleet_id": fleet.fleet_id, "period": 0}
    params = op.get("parameters", [])
    body_schema = None
    if "requestBody" in op:
        body_schema = inline_refs(
            op["requestBody"]["content"]["application/json"]["schema"], components
        )

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def run(data):
        values = {}
        for param in params:
            if param["in"] == "path" or data.draw(st.booleans()):
                values[param["name"]] = data.draw(parameter_values(param, components, known))
        url = path.format(
            **{
                p["name"]: quote(str(values[p["name"]]), safe="")
                for p in params
                if p["in"] == "path"
            }
        )
        query = {
            p["name"]: values[p["name"]]
            for p in params
            if p["in"] == "query" and p["name"] in values
        }
        kwargs: dict = {"params": query, "timeout": 30}
        if body_schema is not None:
            body = data.draw(from_schema(body_schema))
            if data.draw(st.booleans()):  # signed by the operator: reaches the deeper checks
                body = signed_batch(
                    fleet,
                    chain_id,
                    oracle.address,
                    body.get("samples", ()),
                    body.get("revenue", ()),
                    batch_id=body["batch_id"],
                )
            kwargs["json"] = body
        response = httpx.request(method.upper(), node.url + url, **kwargs)
        check_response(method, path, op, response, components)

    run()
