"""Fixtures of the service tests: one anvil and one TelemetryOracle per session,
oracle node processes per test (stopped at teardown)."""

from __future__ import annotations

import psycopg
import pytest
from eth_account import Account
from harness import Anvil, OracleNode, ensure_artifacts, node_env, register_fleet
from postgres import PostgresServer, can_run_server, server_binaries

DAY = 86_400


@pytest.fixture(scope="session")
def anvil():
    ensure_artifacts("TelemetryOracle", "ITelemetryOracle", "IServicer")
    chain = Anvil()
    yield chain
    chain.stop()


@pytest.fixture(scope="session")
def oracle(anvil):
    """The TelemetryOracle; the admin (anvil account 0) holds the fleet-admin role."""
    contract = anvil.deploy("TelemetryOracle", anvil.admin)
    role = contract.functions.FLEET_ADMIN_ROLE().call()
    if not contract.functions.hasRole(role, anvil.admin).call():
        anvil.transact(contract.functions.grantRole(role, anvil.admin))
    return contract


@pytest.fixture(scope="session")
def chain_id(anvil) -> int:
    return anvil.w3.eth.chain_id


@pytest.fixture
def make_node(anvil, oracle, tmp_path):
    """Factory: make_node(name, account=None, start=True, **setting_overrides)."""
    nodes: list[OracleNode] = []

    def factory(name: str, account=None, start: bool = True, **overrides) -> OracleNode:
        account = account or Account.create()
        anvil.fund(account.address)
        workdir = tmp_path / name
        workdir.mkdir(exist_ok=True)
        env = node_env(anvil, oracle.address, account, workdir, node_name=name, **overrides)
        node = OracleNode(name, account, workdir, env)
        nodes.append(node)
        return node.start() if start else node

    yield factory
    for node in nodes:
        node.stop()


@pytest.fixture(scope="module")
def node(anvil, oracle, tmp_path_factory, request):
    """One node per test module serving `fleet` (a module may override it)."""
    account = Account.create()
    anvil.fund(account.address)
    workdir = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    env = node_env(anvil, oracle.address, account, workdir, settle_seconds=60)
    n = OracleNode(workdir.name, account, workdir, env).start()
    yield n
    n.stop()


@pytest.fixture(scope="module")
def fleet(anvil, oracle, node):
    """A one-GPU fleet of day-long periods whose period 0 is open for two more hours."""
    return register_fleet(anvil, oracle, [node.account], 1, DAY, first_period_left=DAY - 7200)


@pytest.fixture(scope="session")
def postgres_server():
    """URL of a PostgreSQL server started for this test run (skips without one)."""
    reason = can_run_server()
    if reason is not None:
        pytest.skip(reason)
    server = PostgresServer(server_binaries())
    url = server.start()
    yield url
    server.stop()


@pytest.fixture
def postgres_url(postgres_server, request):
    """A fresh database on the session's server, one per test."""
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:50].lower()
    admin = psycopg.connect(
        postgres_server.replace("postgresql+psycopg", "postgresql"), autocommit=True
    )
    with admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    return postgres_server.rsplit("/", 1)[0] + "/" + name
