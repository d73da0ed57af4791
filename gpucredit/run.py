"""Run a brownie script from a checkout at any path.

    python -m gpucredit.run scripts/deploy.py [FUNCTION] [ARG ...] [--network NAME]

The same grammar as `brownie run` (FUNCTION defaults to `main`, each ARG is
passed as a string). Without `--network`, or with `--network development`,
the script runs on a private anvil started on a free port and stopped at the
end (`gpucredit.localchain`); with a live network (`brownie networks add`, see
docs/deploy.md) it runs there.

Why not `brownie run`: brownie 1.22 imports a script under a module name made
of its absolute path (`/tmp/tmp.AbC123/gpucredit/scripts/deploy.py` becomes
`tmp.tmp.AbC123.gpucredit.scripts.deploy`), which fails with
`ModuleNotFoundError` whenever a folder above the checkout has a dot in its
name (`mktemp -d`, `/Users/first.last`). Here the script is imported from its
file under a name of its own (`import_script`).

Brownie also keeps its own record of every contract deployed on a live
network under `build/deployments/<chain-id>/`, and refuses to connect when
one of them has no code any more (`ContractNotFound`: a local chain that was
reset). The manifest `deployments/<chain-id>.json` is what this project
relies on, so those stale records are dropped before connecting
(`prune_stale_deployments`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["import_script", "main", "prune_stale_deployments", "run_script"]

USAGE = "usage: python -m gpucredit.run SCRIPT [FUNCTION] [ARG ...] [--network NAME]"


def import_script(path: Path) -> ModuleType:
    """Imports the Python file at `path` as a module whose name does not depend
    on the folders above it."""
    path = Path(path).resolve()
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    name = f"_gpucredit_script_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _project_root(script: Path) -> Path:
    for folder in script.parents:
        if (folder / "brownie-config.yaml").exists():
            return folder
    raise SystemExit(f"{script} is not inside a brownie project (no brownie-config.yaml above it)")


def _code_at(rpc_url: str, addresses: list[str]) -> dict[str, bool]:
    """Whether each address has code, in one JSON-RPC batch."""
    import requests

    batch = [
        {"jsonrpc": "2.0", "id": i, "method": "eth_getCode", "params": [address, "latest"]}
        for i, address in enumerate(addresses)
    ]
    replies = requests.post(rpc_url, json=batch, timeout=30).json()
    by_id = {reply["id"]: reply for reply in replies}
    return {
        address: by_id[i].get("result") not in (None, "0x", "0x0")
        for i, address in enumerate(addresses)
    }


def prune_stale_deployments(build: Path, chain_id: int | str, rpc_url: str) -> list[str]:
    """Removes brownie's records (`build/deployments/<chain-id>/<address>.json` and
    their `map.json` entries) of contracts that have no code on the chain at
    `rpc_url` any more; returns the addresses removed. Records of contracts
    still deployed stay."""
    folder = build / "deployments" / str(chain_id)
    records = {path.stem: path for path in sorted(folder.glob("0x*.json"))}
    if not records or not rpc_url.startswith(("http://", "https://")):
        return []
    gone = [address for address, has in _code_at(rpc_url, list(records)).items() if not has]
    for address in gone:
        records[address].unlink()
    map_path = build / "deployments" / "map.json"
    if gone and map_path.exists():
        deployment_map = json.loads(map_path.read_text())
        chain_map = deployment_map.get(str(chain_id), {})
        for name in list(chain_map):
            chain_map[name] = [a for a in chain_map[name] if a not in gone]
            if not chain_map[name]:
                del chain_map[name]
        if not chain_map:
            deployment_map.pop(str(chain_id), None)
        map_path.write_text(json.dumps(deployment_map, indent=2, sort_keys=True))
    return gone


def _prune_before_connecting(root: Path, network_name: str) -> None:
    from brownie._config import CONFIG

    settings = CONFIG.networks.get(network_name, {})
    if "cmd" in settings or "chainid" not in settings or "host" not in settings:
        return  # a development network: brownie keeps no deployment records
    host = os.path.expandvars(str(settings["host"]))
    try:
        gone = prune_stale_deployments(root / "build", settings["chainid"], host)
    except Exception as exc:  # noqa: BLE001 - unreachable node: brownie's connect reports it
        print(f"note: could not check brownie's deployment records on {network_name}: {exc}")
        return
    if gone:
        print(
            f"brownie's deployment records of {len(gone)} contract(s) on chain "
            f"{settings['chainid']} have no code there any more (was the chain reset?): "
            "removed from build/deployments"
        )


def run_script(
    script: str | Path,
    function: str = "main",
    args: Sequence[str] = (),
    *,
    network: str | None = None,
    port: int | None = None,
) -> Any:
    """Loads the brownie project around `script`, connects to `network` and
    returns `script.function(*args)`.

    `network` None or "development": brownie's development network (anvil), on
    `port` when given (attaching to an anvil already listening there), else on
    a free port (launched here and stopped at the end).
    """
    from brownie import network as brownie_network
    from brownie import project
    from brownie._config import CONFIG

    from gpucredit.localchain import use_free_port_for_development

    path = Path(script).with_suffix(".py").resolve()
    if not path.exists():
        raise SystemExit(f"no script {script}")
    root = _project_root(path)
    loaded = project.get_loaded_projects()
    active = loaded[0] if loaded else project.load(root)
    active.load_config()
    name = network or "development"
    if name == "development":
        if port is None:
            use_free_port_for_development()
        else:
            CONFIG.networks["development"].setdefault("cmd_settings", {})["port"] = port
    else:
        _prune_before_connecting(root, name)
    CONFIG.argv["cli"] = "run"
    CONFIG.argv["network"] = name
    brownie_network.connect(name)
    active._add_to_main_namespace()
    try:
        module = import_script(path)
        func = getattr(module, function, None)
        if not callable(func):
            raise SystemExit(f"{path.name} has no function {function!r}")
        print(f"\nRunning '{path.relative_to(root)}::{function}'...")
        return func(*args)
    finally:
        active._remove_from_main_namespace()
        if brownie_network.is_connected():
            brownie_network.disconnect()


def parse_args(argv: Sequence[str]) -> tuple[str, str, list[str], str | None]:
    """(script, function, args, network) from `brownie run`'s grammar."""
    rest = list(argv)
    network = None
    if "--network" in rest:
        at = rest.index("--network")
        if at + 1 >= len(rest):
            raise SystemExit(f"--network needs a name\n{USAGE}")
        network = rest[at + 1]
        del rest[at : at + 2]
    if not rest or rest[0] in ("-h", "--help"):
        raise SystemExit(f"{USAGE}\n\n{__doc__}")
    script, function, *args = [*rest, "main"] if len(rest) == 1 else rest
    return script, function, args, network


def main(argv: Sequence[str] | None = None) -> None:
    script, function, args, network = parse_args(sys.argv[1:] if argv is None else argv)
    run_script(script, function, args, network=network)


if __name__ == "__main__":
    main()
