"""Hardening of the oracle service: body size limits, per-operator rate limits
(429), secrets kept out of logs and error bodies, keystores that really
encrypt, CORS off unless origins are configured.

Nodes are real `python -m oracle` processes on loopback (see harness.py).
"""

from __future__ import annotations

import json
import logging
import re
import select
import socket
import sqlite3
import time
import warnings

import httpx
import pytest
from eth_account import Account
from fastapi import FastAPI
from harness import OracleNode, node_env, register_fleet, sample, signed_batch, wait_until

from oracle import redact
from oracle.api.errors import install as install_errors
from oracle.errors import ChainUnavailable, ConfigError
from oracle.limits import OperatorRateLimit, TokenBucket
from oracle.settings import Settings

with warnings.catch_warnings():  # starlette prefers httpx2 for its test client; httpx works
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

DAY = 86_400
MAX_BODY = 4_096
PER_MINUTE, BURST = 60, 3  # one batch a second, three at once


@pytest.fixture(scope="module")
def node(anvil, oracle, tmp_path_factory):
    """A node with small limits: 4 KiB bodies, 3 batches at once per operator."""
    account = Account.create()
    anvil.fund(account.address)
    workdir = tmp_path_factory.mktemp("hardened")
    env = node_env(
        anvil,
        oracle.address,
        account,
        workdir,
        max_body_bytes=MAX_BODY,
        rate_limit_per_minute=PER_MINUTE,
        rate_limit_burst=BURST,
    )
    n = OracleNode("hardened", account, workdir, env).start()
    yield n
    n.stop()


@pytest.fixture(scope="module")
def fleets(anvil, oracle, node):
    """Two fleets with different operators, served by the node."""
    return [
        register_fleet(anvil, oracle, [node.account], 1, DAY, first_period_left=DAY - 7200)
        for _ in range(2)
    ]


def push(node, fleet, **kw):
    return httpx.post(f"{node.url}/v1/fleets/{fleet.fleet_id}/telemetry", timeout=10, **kw)


def db_counts(node) -> tuple[int, ...]:
    con = sqlite3.connect(f"file:{node.workdir / 'oracle.db'}?mode=ro", uri=True)
    try:
        return tuple(
            con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("batches", "samples", "revenue_events")
        )
    finally:
        con.close()


def batch(fleet, chain_id, oracle, offset=0, key=None):
    return signed_batch(fleet, chain_id, oracle.address, [sample(fleet.genesis + offset)], key=key)


# ---------------------------------------------------------------- body size


def test_body_over_the_limit_is_refused_before_it_is_read(node, fleets, chain_id, oracle):
    fleet = fleets[0]
    before = db_counts(node)
    body = batch(fleet, chain_id, oracle)
    body["padding"] = "x" * MAX_BODY  # the schema would refuse it too, but never sees it
    r = push(node, fleet, json=body)
    assert r.status_code == 413
    assert r.json()["error"] == {
        "code": "body_too_large",
        "message": f"the request body exceeds {MAX_BODY} bytes",
        "detail": {"max_bytes": MAX_BODY},
    }

    def chunks():  # no Content-Length: counted while it streams in
        for _ in range(MAX_BODY // 512 + 2):
            yield b" " * 512

    r = push(node, fleet, content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert db_counts(node) == before
    # a body just under the limit still goes through the normal checks
    small = batch(fleet, chain_id, oracle, offset=5)
    assert len(json.dumps(small)) < MAX_BODY
    assert push(node, fleet, json=small).status_code == 201


def test_deeply_nested_json_is_a_client_error(node, fleets):
    nested = b"[" * 1_500 + b"]" * 1_500
    r = push(node, fleets[0], content=nested, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text


# ---------------------------------------------------------------- rate limit


def test_operator_rate_limit_answers_429_with_retry_after(node, fleets, chain_id, oracle):
    first, second = fleets
    time.sleep(BURST)  # whatever earlier tests spent is back
    # forged batches (another key) never spend the real operator's budget
    for i in range(2 * BURST):
        forged = batch(first, chain_id, oracle, offset=100 + i, key=Account.create().key)
        assert push(node, first, json=forged).status_code == 403
    accepted = [batch(first, chain_id, oracle, offset=200 + i) for i in range(BURST)]
    for body in accepted:
        r = push(node, first, json=body)
        assert r.status_code == 201, r.text
    before = db_counts(node)
    extra = batch(first, chain_id, oracle, offset=300)
    r = push(node, first, json=extra)
    assert r.status_code == 429
    error = r.json()["error"]
    assert error["code"] == "rate_limited"
    assert int(r.headers["retry-after"]) == error["detail"]["retry_after_seconds"] >= 1
    assert db_counts(node) == before  # nothing stored
    # another operator is not affected
    other = batch(second, chain_id, oracle, offset=300)
    assert push(node, second, json=other).status_code == 201
    # after Retry-After the operator may push again
    time.sleep(int(r.headers["retry-after"]) + 0.2)
    assert push(node, first, json=extra).status_code == 201
    metrics = node.get("/metrics").text
    assert 'oracle_telemetry_batches_total{outcome="rate_limited"}' in metrics


def test_token_bucket_refills_at_its_rate():
    now = [0.0]
    bucket = TokenBucket(2.0, 3, max_keys=2, clock=lambda: now[0])
    assert [bucket.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take("a") == pytest.approx(0.5)
    now[0] += 0.5
    assert bucket.take("a") == 0.0
    assert bucket.take("b") == 0.0 and bucket.take("c") == 0.0  # "a" evicted: least recent
    assert bucket.take("a") == 0.0
    limit = OperatorRateLimit(60, 1, clock=lambda: now[0])
    limit.check("0xAbC")
    with pytest.raises(Exception, match="exceeds 60 batches a minute") as raised:
        limit.check("0xabc")  # keys are case-insensitive addresses
    assert raised.value.status_code == 429 and raised.value.detail["retry_after_seconds"] == 1


# ---------------------------------------------------------------- CORS


def test_cors_is_off_by_default(node):
    origin = {"origin": "https://evil.example"}
    r = httpx.get(node.url + "/health", headers=origin, timeout=10)
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    preflight = httpx.options(
        node.url + "/v1/fleets/1/telemetry",
        headers=origin | {"access-control-request-method": "POST"},
        timeout=10,
    )
    assert "access-control-allow-origin" not in preflight.headers
    assert preflight.status_code == 405


def test_cors_allows_only_the_configured_origins(make_node):
    n = make_node("cors", cors_origins="https://dash.example,http://localhost:3000")
    ask = {
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type",
    }
    ok = httpx.options(
        n.url + "/v1/fleets/1/telemetry",
        headers=ask | {"origin": "https://dash.example"},
        timeout=10,
    )
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "https://dash.example"
    assert "access-control-allow-credentials" not in ok.headers
    other = httpx.options(
        n.url + "/v1/fleets/1/telemetry",
        headers=ask | {"origin": "https://evil.example"},
        timeout=10,
    )
    assert other.status_code == 400 and "access-control-allow-origin" not in other.headers


@pytest.mark.parametrize("origins", ["*", "https://dash.example/app", "dash.example"])
def test_wildcard_or_malformed_origins_are_refused(origins):
    environ = {
        "GPUCREDIT_ORACLE_RPC_URL": "http://127.0.0.1:8545",
        "GPUCREDIT_ORACLE_ORACLE_ADDRESS": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
        "GPUCREDIT_ORACLE_SIGNER_KEY": Account.create().key.hex(),
        "GPUCREDIT_ORACLE_CORS_ORIGINS": origins,
    }
    with pytest.raises(ConfigError, match="CORS_ORIGINS"):
        Settings.from_env(environ)


# ---------------------------------------------------------------- secrets


def test_secrets_stay_out_of_the_log_when_the_rpc_fails(make_node, anvil, tmp_path):
    """A hosted RPC URL carries its API key in the path and query; the RPC
    error quotes the URL. The node's log must still not contain it, nor the
    keystore password or the key."""
    account = Account.create()
    keystore = tmp_path / "key.json"
    keystore.write_text(json.dumps(Account.encrypt(account.key, "Tr0ub4dor&3-hunter2")))
    node = make_node(
        "leaky",
        account=account,
        start=False,
        rpc_url=f"{anvil.url}/v3/PATHSECRET1234?apikey=QUERYSECRET5678",
        chain_wait_seconds=1,
        signer_key=None,
        keystore_file=keystore,
        keystore_password="Tr0ub4dor&3-hunter2",
    )
    node.start(wait=False)
    wait_until(lambda: node.proc.poll() is not None, 60, what="the node to give up on its RPC")
    log = node.read_log()
    assert "chain RPC failed" in log and "404" in log  # the error itself is logged ...
    assert f"{anvil.url}/***" in log  # ... with the secret masked
    for secret in ("PATHSECRET1234", "QUERYSECRET5678", "Tr0ub4dor", account.key.hex()[2:]):
        assert secret not in log


def test_redaction_covers_messages_tracebacks_and_error_bodies(caplog):
    settings = Settings(
        rpc_url="https://user:rpcpass99@rpc.example/v3/KEY0123456789",
        oracle_address="0x5FbDB2315678afecb367f032d93F642f64180aa3",
        signer_key="0x" + "ab" * 32,
        database_url="postgresql+psycopg://oracle:dbpass4242@db/oracle",
        peers=["https://peer:peerpass7@node-b.example"],
    )
    redact.clear()
    redact.register_settings(settings)
    redact.install()
    try:
        log = logging.getLogger("oracle.test")
        with caplog.at_level(logging.INFO, logger="oracle.test"):
            log.info("posting with %s to %s", "ab" * 32, settings.rpc_url)
            try:
                raise RuntimeError(f"connect failed: {settings.database_url}")
            except RuntimeError:
                log.exception("worker round failed")
        text = caplog.text
        for secret in ("ab" * 32, "rpcpass99", "KEY0123456789", "dbpass4242"):
            assert secret not in text
        assert "rpc.example" in text and "worker round failed" in text

        app = FastAPI()
        install_errors(app)

        @app.get("/boom")
        def boom():
            raise ChainUnavailable(
                f"chain RPC failed: {settings.rpc_url}", {"url": settings.peers[0]}
            )

        body = TestClient(app).get("/boom").json()["error"]
        assert "KEY0123456789" not in body["message"] and "rpcpass99" not in body["message"]
        assert "peerpass7" not in json.dumps(body["detail"])
        assert body["message"].startswith("chain RPC failed: https://***@rpc.example/")
    finally:
        redact.clear()


# ---------------------------------------------------------------- keystores


def test_only_a_properly_encrypted_keystore_is_accepted(tmp_path):
    key = Account.create()
    base = {
        "GPUCREDIT_ORACLE_RPC_URL": "http://127.0.0.1:8545",
        "GPUCREDIT_ORACLE_ORACLE_ADDRESS": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
        "GPUCREDIT_ORACLE_KEYSTORE_PASSWORD": "a long passphrase",
    }
    cases = {
        "plain.json": ({"address": key.address, "private_key": key.key.hex()}, "no crypto"),
        "cheap-scrypt.json": (Account.encrypt(key.key, "a long passphrase", iterations=2), "n=2"),
        "cheap-pbkdf2.json": (
            Account.encrypt(key.key, "a long passphrase", kdf="pbkdf2", iterations=1_000),
            "c=1000",
        ),
    }
    for name, (content, problem) in cases.items():
        path = tmp_path / name
        path.write_text(json.dumps(content))
        with pytest.raises(ConfigError, match=f"not safely encrypted: .*{problem}"):
            Settings.from_env(base | {"GPUCREDIT_ORACLE_KEYSTORE_FILE": str(path)})
    good = tmp_path / "good.json"
    good.write_text(json.dumps(Account.encrypt(key.key, "a long passphrase")))  # scrypt 2**18
    settings = Settings.from_env(base | {"GPUCREDIT_ORACLE_KEYSTORE_FILE": str(good)})
    assert settings.load_account().address == key.address
    assert key.key.hex()[2:] not in repr(settings)


# ---------------------------------------------------------------- fuzz-found requests


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM), in MiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc status")


def raw_request(node, head: bytes, body_chunks, tail: bytes = b"0\r\n\r\n"):
    """Sends ``head``, the body chunks and ``tail`` on one socket, stopping as
    soon as the node answers or closes; returns (status line, headers, body,
    bytes of body sent before that)."""
    sent = 0
    with socket.create_connection(("127.0.0.1", node.port), timeout=30) as sock:
        sock.sendall(head)
        for chunk in body_chunks:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        else:
            sock.sendall(tail)
        sock.settimeout(30)
        data = b""
        try:
            while True:
                part = sock.recv(65536)
                if not part:
                    break
                data += part
                if b"\r\n\r\n" in data:
                    head_part, _, rest = data.partition(b"\r\n\r\n")
                    length = re.search(rb"(?i)content-length: *(\d+)", head_part)
                    if length and len(rest) >= int(length.group(1)):
                        break
        except (ConnectionResetError, TimeoutError):
            pass
    head_part, _, rest = data.partition(b"\r\n\r\n")
    lines = head_part.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return lines[0], {k.lower(): v for k, v in headers.items()}, rest, sent


def test_huge_chunked_body_behind_a_small_content_length_is_cut_at_the_limit(node, fleets):
    """``Content-Length: 4`` plus ``Transfer-Encoding: chunked`` used to stream
    200 MB into the node (peak RSS 105 -> 812 MB) before a 422: the limit held
    on the declared length only. It must hold on the bytes actually read."""
    fleet = fleets[0]
    before = db_counts(node)
    rss_before = peak_rss_mb(node.proc.pid)
    chunk = b"x" * (1 << 20)
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    head = (
        f"POST /v1/fleets/{fleet.fleet_id}/telemetry HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{node.port}\r\n"
        "Content-Type: application/json\r\n"
        "Content-Length: 4\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    status, headers, body, sent = raw_request(node, head, (frame for _ in range(200)))
    rss_after = peak_rss_mb(node.proc.pid)
    print(f"peak RSS {rss_before:.0f} -> {rss_after:.0f} MiB, {sent >> 20} MiB sent")
    assert status.split()[1] == "413", (status, body[:200])
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["error"]["code"] == "body_too_large"
    assert sent < 32 << 20  # answered long before the 200 MB were sent
    assert rss_after - rss_before < 32  # MiB: the body was never held in memory
    assert db_counts(node) == before
    assert node.healthy()


def test_query_integers_beyond_their_column_are_422_not_500(node, fleets):
    """``before=2**63`` reached SQLite and answered 500 text/plain (OverflowError)."""
    fleet_id = fleets[0].fleet_id
    for path in (
        f"/v1/fleets/{fleet_id}/reports?before=9223372036854775808",
        f"/v1/fleets/{fleet_id}/reports?before=-1",
        f"/v1/fleets/{fleet_id}/reports?limit=9223372036854775808",
        "/v1/transactions?fleet_id=9223372036854775808",
        f"/v1/fleets/{fleet_id}/periods/{2**64}",
        f"/v1/fleets/{2**64}/periods/0/observations",
        f"/v1/fleets/{2**63}/reports",
    ):
        r = node.get(path)
        assert r.status_code == 422, (path, r.status_code, r.text)
        assert r.headers["content-type"] == "application/json"
        assert r.json()["error"]["code"] == "schema_invalid"
    ok = node.get(f"/v1/fleets/{fleet_id}/reports?before={2**32}")
    assert ok.status_code == 200 and ok.json() == []


def test_an_unhandled_exception_answers_the_json_error_shape_without_secrets():
    app = FastAPI()
    install_errors(app)

    @app.get("/boom")
    def boom():
        raise OverflowError("Python int too large; rpc https://rpc.example/v3/KEY0123456789")

    r = TestClient(app, raise_server_exceptions=False).get("/boom")
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {
        "error": {
            "code": "internal_error",
            "message": "the node failed to handle the request; its log has the cause",
            "detail": None,
        }
    }


# ---------------------------------------------------------------- fault rule


def test_a_node_refuses_to_start_with_a_node_set_that_breaks_the_fault_rule(make_node):
    """n >= 3f + 1: three nodes (this one and two peers) cannot tolerate one
    faulty node, so a node configured for f = 1 with two peers does not start."""
    peers = "http://127.0.0.1:9/,http://127.0.0.2:9/"
    node = make_node("three-for-f1", start=False, peers=peers, fault_bound=1)
    node.start(wait=False)
    assert node.proc.wait(60) == 2
    log = node.read_log()
    assert "3 node(s) cannot tolerate f = 1 faulty one(s)" in log
    assert "at least 4 nodes" in log

    base = {
        "GPUCREDIT_ORACLE_RPC_URL": "http://127.0.0.1:8545",
        "GPUCREDIT_ORACLE_ORACLE_ADDRESS": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
        "GPUCREDIT_ORACLE_SIGNER_KEY": Account.create().key.hex(),
    }
    four = base | {"GPUCREDIT_ORACLE_PEERS": "http://b:1,http://c:1,http://d:1"}
    assert Settings.from_env(four | {"GPUCREDIT_ORACLE_FAULT_BOUND": "1"}).fault_bound == 1
    with pytest.raises(ConfigError, match="cannot tolerate f = 2"):
        Settings.from_env(four | {"GPUCREDIT_ORACLE_FAULT_BOUND": "2"})
    with pytest.raises(ConfigError, match="a peer is listed twice"):  # no padding n
        Settings.from_env(
            base
            | {
                "GPUCREDIT_ORACLE_PEERS": "http://b:1,http://b:1/,http://c:1",
                "GPUCREDIT_ORACLE_FAULT_BOUND": "1",
            }
        )
