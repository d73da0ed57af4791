"""The test suite's patches of brownie and requests, and its batched view reads.

Test-harness code, kept next to the tests so the installed `gpucredit`
package holds product code only. `tests/conftest.py` installs the patches
for every contract test (brownie's pytest plugin); anything else that drives
brownie the same way (a benchmark) may import this file from `tests/`.

* `skip_proxy_lookups`: brownie's requests session to the local node skips
  requests' proxy and .netrc look-ups (about a millisecond per JSON-RPC call).
* `tolerate_receipt_race`: brownie's confirmation thread no longer mistakes a
  receipt anvil serves late for a dropped transaction
  (tests/unit/test_brownie_harness.py).
* `read_views`: many view calls in one JSON-RPC batch (the state machines'
  invariants, checked after every step).
"""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def _local_rpc_session() -> Any:
    """One requests session to the local node without proxy or .netrc look-ups
    (requests otherwise reads the environment on every request: ~1 ms each)."""
    import requests

    session = requests.Session()
    session.trust_env = False
    return session


def skip_proxy_lookups() -> None:
    """Same for brownie's own web3 session (this thread's), once connected."""
    from brownie import web3

    provider = web3.provider
    manager = getattr(provider, "_request_session_manager", None)
    if manager is not None and getattr(provider, "endpoint_uri", None):
        manager.cache_and_return_session(provider.endpoint_uri).trust_env = False


def tolerate_receipt_race(attempts: int = 40) -> None:
    """Brownie waits for a receipt in a thread that gives up with "Tx dropped
    without known replacement" when it sees the sender's nonce counted but no
    receipt yet. Against anvil that is a race, not a dropped transaction: it
    happened about once in 100,000 transactions of a long campaign. On that
    error, poll the receipt again for a while and confirm the transaction as
    brownie would have; a transaction that never appears still raises."""
    import time

    from brownie.exceptions import TransactionError
    from brownie.network.account import _PrivateKeyAccount
    from brownie.network.transaction import Status

    original = _PrivateKeyAccount._await_confirmation
    if getattr(original, "_tolerates_receipt_race", False):
        return

    def _await_confirmation(self, receipt, required_confs, gas_strategy, gas_iter):
        try:
            return original(self, receipt, required_confs, gas_strategy, gas_iter)
        except TransactionError as exc:
            if "dropped without known replacement" not in str(exc):
                raise
            for _ in range(attempts):
                time.sleep(0.05)
                receipt.status = Status(-1)
                receipt._confirmed.clear()
                receipt._await_confirmation(None, required_confs)
                if receipt.status != Status(-2):
                    return receipt
            raise

    _await_confirmation._tolerates_receipt_race = True
    _PrivateKeyAccount._await_confirmation = _await_confirmation


def read_views(*calls: tuple) -> list[Any]:
    """Runs view calls `(contract.method, *args)` in one JSON-RPC batch at the
    latest block: one round trip instead of one per view, which is what makes
    checking every invariant after every step of a long campaign affordable.
    A view that reverts raises with the method and the node's error."""
    from brownie import web3

    batch = [
        {
            "jsonrpc": "2.0",
            "id": i,
            "method": "eth_call",
            "params": [{"to": method._address, "data": method.encode_input(*args)}, "latest"],
        }
        for i, (method, *args) in enumerate(calls)
    ]
    if not batch:
        return []
    replies = _local_rpc_session().post(web3.provider.endpoint_uri, json=batch, timeout=60)
    by_id = {reply["id"]: reply for reply in replies.json()}
    values = []
    for i, (method, *args) in enumerate(calls):
        if "error" in by_id[i]:
            raise RuntimeError(f"{method._name}{tuple(args)}: {by_id[i]['error']}")
        value = method.decode_output(by_id[i]["result"])
        values.append(tuple(value) if isinstance(value, tuple | list) else value)
    return values
