"""Issue 16: the web app over the indexed demo year.

API: every endpoint is in the OpenAPI schema; bad input (unknown note or
table, malformed address, a page past the end, an unknown format) is a clear
4xx, never a 500; the CSV export parses and sums to the chain's figures; the
loan tape has one row per period per tranche.

Browser (Playwright driving Debian's chromium, /usr/bin/chromium; `make
test-web` installs it when missing): the notes page lists both tranches with
the chain's rates; the note page shows the step-down and step-up periods and
the top-up; a lender page's claimed coupons equal the chain's; the audit page
reports zero mismatches. Screenshots go to the test's tmp output dir
(printed, and kept by pytest under /tmp/pytest-of-$USER/).
"""

import csv
import io
import os
import shutil
import threading
import time

import pytest
from fastapi.testclient import TestClient

from gpucredit.web.app import create_app

CHROMIUM = os.environ.get("GPUCREDIT_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def client(indexed):
    return TestClient(create_app(indexed[2]))


def test_every_endpoint_in_openapi(client):
    schema = client.get("/openapi.json").json()
    documented = set(schema["paths"])
    routes = {
        r.path
        for r in client.app.routes
        if getattr(r, "methods", None)
        and r.path not in ("/openapi.json", "/docs", "/redoc")
        and not r.path.startswith("/docs/")
    }
    assert routes <= documented, routes - documented
    assert "/api/tables/{name}.{fmt}" in documented


@pytest.mark.parametrize(
    "path, status, words",
    [
        ("/api/notes/999", 404, "no note 999"),
        ("/notes/999", 404, "no note 999"),
        ("/api/notes/abc", 422, "note_id"),
        ("/api/lenders/0x1234", 422, "address"),
        ("/lenders/not-an-address", 422, "address"),
        ("/api/tables/nope.csv", 404, "no table"),
        ("/api/tables/periods.xml", 422, "fmt"),
        ("/api/tables/periods.json?page=99", 404, "past the end"),
        ("/api/tables/periods.json?page=0", 422, "page"),
        ("/api/tables/periods.json?per_page=100000", 422, "per_page"),
        ("/api/notes/999/loan-tape.csv", 404, "no note 999"),
    ],
)
def test_bad_input_is_a_clear_4xx(client, path, status, words):
    response = client.get(path)
    assert response.status_code == status, response.text
    assert words in response.text
    html = client.get(path, headers={"accept": "text/html"})
    assert html.status_code == status
    if not path.startswith("/api"):
        assert "<h1" in html.text and words in html.text


# Bad values for every kind of path parameter the schema has, with the status each must get.
BAD_PATH_VALUES = {
    "note_id": [("999", 404, "no note 999"), ("abc", 422, "note_id"), ("-1", 422, "note_id")],
    "address": [
        ("0x1234", 422, "address"),
        ("0x" + "zz" * 20, 422, "address"),
        ("not-an-address", 422, "address"),
    ],
    "name": [("nope", 404, "no table"), ("events%00", 404, "no table")],
    "fmt": [("xml", 422, "fmt"), ("CSV", 422, "fmt")],
}
GOOD_PATH_VALUES = {"note_id": None, "address": None, "name": "periods", "fmt": "json"}
BAD_QUERY_VALUES = {
    "page": [("0", 422, "page"), ("x", 422, "page"), ("99999", 404, "past the end")],
    "per_page": [("0", 422, "per_page"), ("100000", 422, "per_page")],
}


def _operations(schema):
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            params = op.get("parameters", [])
            yield (
                path,
                method,
                {p["name"]: p for p in params if p["in"] == "path"},
                [p["name"] for p in params if p["in"] == "query"],
            )


def _fill(path, values):
    for key, value in values.items():
        path = path.replace("{" + key + "}", str(value))
    return path


def test_every_openapi_endpoint_rejects_bad_input(client, indexed):
    """Driven by the schema, so a new endpoint is covered when it is added: each path
    parameter gets each bad value (the others good), each query parameter too; the
    answer is the stated 4xx with a message naming the problem, in JSON for /api and
    in an HTML page for pages; never a 500. Good values answer 200."""
    year = indexed[0]
    good = dict(
        GOOD_PATH_VALUES,
        note_id=year.deal.note_id,
        address=year.subscriptions[0][1].address,
    )
    schema = client.get("/openapi.json").json()
    checked = 0
    for path, method, path_params, query_params in _operations(schema):
        assert method == "get", (path, method)  # read-only: no other method
        unknown = set(path_params) - set(BAD_PATH_VALUES)
        assert not unknown, f"{path}: add bad values for {unknown} to this test"
        unknown = set(query_params) - set(BAD_QUERY_VALUES)
        assert not unknown, f"{path}: add bad values for {unknown} to this test"
        base = {k: good[k] for k in path_params}
        ok = client.get(_fill(path, base))
        assert ok.status_code == 200, (path, ok.text)
        cases = [
            (_fill(path, dict(base, **{k: bad})), status, words)
            for k in path_params
            for bad, status, words in BAD_PATH_VALUES[k]
        ] + [
            (f"{_fill(path, base)}?{k}={bad}", status, words)
            for k in query_params
            for bad, status, words in BAD_QUERY_VALUES[k]
        ]
        for url, status, words in cases:
            for accept in ("application/json", "text/html"):
                response = client.get(url, headers={"accept": accept})
                assert response.status_code == status, (url, accept, response.text)
                assert words in response.text, (url, accept, response.text)
                if accept == "text/html" and not url.startswith("/api"):
                    assert "<h1" in response.text
                elif url.startswith("/api"):
                    assert response.json()["status"] == status
                checked += 1
    assert checked >= 40


def test_empty_index_is_never_a_500(tmp_path):
    """Before the first `gpucredit index` run: every endpoint answers, 200 or 404."""
    empty = TestClient(create_app(str(tmp_path / "empty.sqlite")))
    schema = empty.get("/openapi.json").json()
    values = dict(GOOD_PATH_VALUES, note_id=1, address="0x" + "11" * 20)
    for path, _, path_params, _ in _operations(schema):
        url = _fill(path, {k: values[k] for k in path_params})
        for accept in ("application/json", "text/html"):
            response = empty.get(url, headers={"accept": accept})
            assert response.status_code in (200, 404), (url, accept, response.text)
            if response.status_code == 404:
                assert response.text


def test_csv_export_sums_to_chain(client, indexed):
    year = indexed[0]
    text = client.get("/api/tables/positions.csv").text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {r["currency"] for r in rows} == {"USD"}
    claimed = sum(float(r["coupons_claimed"]) for r in rows)
    chain_claimed = sum(coupons for _, coupons in year.payouts) / 1e6
    assert claimed == pytest.approx(chain_claimed, abs=1e-6)
    redeemed = sum(float(r["principal_redeemed"]) for r in rows)
    assert redeemed == pytest.approx(sum(p for p, _ in year.payouts) / 1e6, abs=1e-6)
    periods = client.get("/api/tables/periods.json").json()
    assert periods["total"] == 12
    first = periods["rows"][0]
    assert isinstance(first["revenue_cash"], float) and first["timestamp"].endswith("Z")
    assert isinstance(first["dscr_bps"], int)


def test_note_risk_figures(client, indexed, monkeypatch):
    """The risk engine's figures on the note, from its on-chain terms, labelled and cached."""
    from gpucredit.story import GPUS
    from gpucredit.web import risk as web_risk

    year = indexed[0]
    risk = client.get(f"/api/notes/{year.deal.note_id}").json()["risk"]
    assert (risk["scenario"], risk["paths"]) == (web_risk.RISK_SCENARIO, web_risk.RISK_PATHS)
    assert [t["name"] for t in risk["tranches"]] == ["senior", "junior"]
    senior, junior = risk["tranches"]
    for t in (senior, junior):
        assert 0 <= t["pd"] <= 1 and 0 <= t["el"] <= t["pd"] + 1e-12
    assert junior["el"] >= senior["el"]  # the junior absorbs losses first
    batches = client.get("/api/tables/batches.json").json()["rows"]
    pledged = sum(b["gpus"] for b in batches if b["status"] == "pledged")
    assert risk["fleet"]["gpus"] == pledged >= GPUS  # the pledged batches, not the scenario's

    def not_again(*_args, **_kw):
        raise AssertionError("the risk figures were computed again")

    monkeypatch.setattr(web_risk, "note_risk", not_again)
    assert client.get(f"/api/notes/{year.deal.note_id}").json()["risk"] == risk  # cached
    print(f"risk figures: {risk}")


def test_loan_tape(client, indexed):
    year = indexed[0]
    tape = client.get(f"/api/notes/{year.deal.note_id}/loan-tape.json").json()
    assert len(tape["rows"]) == 12 * 2
    assert set(tape["rows"][0]) == set(tape["columns"])
    csv_rows = list(
        csv.DictReader(
            io.StringIO(client.get(f"/api/notes/{year.deal.note_id}/loan-tape.csv").text)
        )
    )
    assert len(csv_rows) == 24
    for tranche in year.deal.tranches:
        mine = [r for r in tape["rows"] if r["tranche"] == tranche.address]
        assert mine[-1]["balance_after"] == 0


# ---------------------------------------------------------------------------
# Browser
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(indexed):
    import uvicorn

    from gpucredit.localchain import free_port

    port = free_port()
    config = uvicorn.Config(create_app(indexed[2]), host="127.0.0.1", port=port, log_level="error")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(100):
        if srv.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(5)


@pytest.fixture(scope="module")
def page(server):
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        pytest.skip(f"no chromium at {CHROMIUM}: `apt-get install -y chromium` (make test-web)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        tab = browser.new_page(viewport={"width": 1400, "height": 1000})
        yield tab
        browser.close()


def shot(page, tmp_path_factory, name):
    folder = tmp_path_factory.getbasetemp() / "screenshots"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot {path}")


def test_browser_notes_page(page, server, indexed, tmp_path_factory):
    year = indexed[0]
    page.goto(server + "/")
    rows = page.locator("#tranches tr[data-seniority]")
    assert rows.count() == 2
    for tranche, seniority in zip(year.deal.tranches, ("senior", "junior"), strict=True):
        cell = page.locator(f"#tranches tr[data-seniority={seniority}] td.rate")
        assert int(cell.get_attribute("data-bps")) == tranche.currentRateBps()
        assert cell.inner_text() == f"{tranche.currentRateBps() / 100:.2f} %"
    shot(page, tmp_path_factory, "notes")


def test_browser_note_page(page, server, indexed, tmp_path_factory):
    year = indexed[0]
    page.goto(f"{server}/notes/{year.deal.note_id}")
    steps = {
        int(r.get_attribute("data-period")): int(r.get_attribute("data-step"))
        for r in page.locator("#periods tr[data-period]").all()
    }
    assert steps[2] == -200 and steps[1] == 0  # step-down in period 2
    assert steps[4] == 300 and steps[3] == -200  # step-up in period 4
    assert page.locator("#rates tr.down").count() >= 2
    assert page.locator("#rates tr.up").count() >= 2
    assert page.locator("#timeline li[data-kind=TopUpRequired]").count() == 1
    assert page.locator("#timeline li[data-kind=TopUpCured]").count() == 1
    assert page.locator("svg#chart-dscr polyline").count() == 2  # the JS drew the charts
    from gpucredit.web.risk import RISK_PATHS, RISK_SCENARIO

    label = page.locator("#risk-label")
    assert label.get_attribute("data-scenario") == RISK_SCENARIO
    assert int(label.get_attribute("data-paths")) == RISK_PATHS
    assert f"{RISK_PATHS:,} paths" in label.inner_text()
    for name in ("senior", "junior"):
        row = page.locator(f"#risk tr[data-tranche={name}]")
        assert 0 <= float(row.locator("td.pd").get_attribute("data-value")) <= 1
        assert row.locator("td.el").inner_text().endswith("%")
    shot(page, tmp_path_factory, "note")


def test_browser_lender_page(page, server, indexed, tmp_path_factory):
    year = indexed[0]
    for (_, lender, *_), (_, coupons) in zip(year.subscriptions, year.payouts, strict=True):
        page.goto(f"{server}/lenders/{lender.address.lower()}")
        shown = float(page.locator("#coupons-claimed").get_attribute("data-value"))
        chain_total = sum(
            c
            for (_, lnd, *_), (_, c) in zip(year.subscriptions, year.payouts, strict=True)
            if lnd == lender
        )
        assert shown == pytest.approx(chain_total / 1e6, abs=1e-6)
        assert coupons > 0
        # accrued and claimable per tranche: the chain's views at the indexed block
        block = int(page.locator("#as-of").get_attribute("data-block"))
        for tranche in year.deal.tranches:
            row = page.locator(f"#positions tr[data-tranche='{tranche.address}']")
            if row.count() == 0:
                continue
            accrued = int(row.locator("td.accrued").get_attribute("data-base"))
            claimable = int(row.locator("td.claimable").get_attribute("data-base"))
            assert accrued == tranche.couponOwed(lender, block_identifier=block)
            assert claimable == tranche.couponClaimable(lender, block_identifier=block)
            assert row.locator("td.projected").inner_text().endswith("%")
    shot(page, tmp_path_factory, "lender")


def test_browser_audit_page(page, server, tmp_path_factory):
    page.goto(server + "/audit")
    summary = page.locator("#audit-summary")
    assert summary.get_attribute("data-mismatches") == "0", summary.inner_text()
    assert "0 mismatches" in summary.inner_text()
    shot(page, tmp_path_factory, "audit")


def test_escrow_share_of_coupons_survives_the_share_claim():
    """gpucredit/web/coupons.py counts the coupons of face still in escrow, as the
    contract's couponOwed does (the fill is the holder's position from the drawdown on).
    The demo's lenders claim their face at once, so this path is checked on the
    synthetic history, whose late claimers take theirs periods after drawdown: what a
    holder is owed just before its claimShares equals what it is owed just after, and
    before the claim part of its face is still in escrow."""
    from gpucredit.audit.replay import Replayer
    from gpucredit.audit.synthetic import synthetic_history
    from gpucredit.web.coupons import holding

    history = synthetic_history(4_000, notes=3, periods=14, lenders=4, seed=11)
    evs = history.events
    checked = 0
    for i, ev in enumerate(evs):
        if ev["event"] != "SharesClaimed":
            continue
        start = i
        while start > 0 and evs[start - 1]["tx"] == ev["tx"]:
            start -= 1
        end = i
        while end + 1 < len(evs) and evs[end + 1]["tx"] == ev["tx"]:
            end += 1
        before, after = Replayer(history.header), Replayer(history.header)
        before.run([dict(e) for e in evs[:start]])
        after.run([dict(e) for e in evs[: end + 1]])
        key = ev["address"].lower()
        if before.tranches[key].state != 2:  # ACTIVE: only then is escrowed face owed coupon
            continue
        holder = ev["args"]["controller"]
        was = holding(before.tranches[key], holder, ev["timestamp"])
        now = holding(after.tranches[key], holder, ev["timestamp"])
        if was.coupons_accrued == 0:
            continue
        assert before.tranches[key].holders[holder.lower()].escrowed > 0  # earning in escrow
        assert (was.coupons_accrued, was.coupons_claimable) == (
            now.coupons_accrued,
            now.coupons_claimable,
        ), (ev["block"], holder)
        assert was.principal_outstanding == now.principal_outstanding
        checked += 1
    assert checked >= 1, "no late share claim with coupons owed in the history"
