"""The checkout runs from any path, and the documented deploy runs again after
the local chain was reset.

The checkout is copied under a folder with a dot in its name, as `mktemp -d`
makes one (`/tmp/tmp.AbC123/gpucredit`) or as a macOS home is named
(`/Users/first.last`): `brownie run` imports a script under a module name made
of its absolute path and fails there with `ModuleNotFoundError`. The copy
reuses this checkout's npm packages (a `node_modules` symlink), virtualenv
(PATH) and compiled contracts (build/contracts: the same sources, so brownie
does not compile again); its own `gpucredit` package comes first on
PYTHONPATH.

Run with `python -m pytest -p no:pytest-brownie tests/service/test_deploy_anywhere.py`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from harness import ARTIFACTS, Anvil, ensure_artifacts
from livenet import ANVIL_KEY_0, BIN, REPO, LiveNetwork
from test_deploy_config import docs_yaml_blocks

from gpucredit.deployment import CORE_CONTRACTS
from gpucredit.run import parse_args

DOTTED = "tmp.AbC123"
SKIPPED = shutil.ignore_patterns(
    ".git",
    ".venv",
    "node_modules",
    "build",
    "reports",
    "var",
    "__pycache__",
    ".hypothesis",
    ".pytest_cache",
    ".ruff_cache",
    "*.egg-info",
)


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """This checkout, copied to <tmp>/tmp.AbC123/gpucredit."""
    ensure_artifacts(*CORE_CONTRACTS.values())
    target = tmp_path_factory.mktemp(DOTTED, numbered=False) / "gpucredit"
    shutil.copytree(REPO, target, symlinks=True, ignore=SKIPPED)
    (target / "build").mkdir()
    shutil.copytree(ARTIFACTS, target / "build" / "contracts")
    if (REPO / "build" / "interfaces").exists():
        shutil.copytree(REPO / "build" / "interfaces", target / "build" / "interfaces")
    (target / "node_modules").symlink_to(REPO / "node_modules")
    for manifest in (target / "deployments").glob("*.json"):
        manifest.unlink()  # this checkout's local deployments are not the copy's
    assert "." in target.parent.name
    return target


def _env(checkout: Path, home: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GPUCREDIT_", "PYTEST_"))}
    env.update(
        HOME=str(home),
        PATH=f"{REPO / 'node_modules' / '.bin'}:{BIN}:{env.get('PATH', '')}",
        SOLCX_BINARY_PATH=str(REPO / "tools" / "solc" / "bin"),
        VIRTUAL_ENV=str(BIN.parent),
        PYTHONPATH=str(checkout),
    )
    return env


def _manifest_contracts(path: Path) -> dict[str, dict]:
    return json.loads(path.read_text())["contracts"]


def test_the_runner_takes_the_arguments_of_brownie_run():
    assert parse_args(["scripts/deploy.py"]) == ("scripts/deploy.py", "main", [], None)
    assert parse_args(
        ["scripts/deploy.py", "main", "deploy.yaml", "--network", "gpucredit-sepolia", "a=b"]
    ) == ("scripts/deploy.py", "main", ["deploy.yaml", "a=b"], "gpucredit-sepolia")
    with pytest.raises(SystemExit, match="--network needs a name"):
        parse_args(["scripts/deploy.py", "--network"])


def test_a_checkout_under_a_dotted_folder_deploys_on_a_private_anvil(checkout, tmp_path):
    """`python -m gpucredit.localchain run scripts/deploy.py` (and so `make demo`'s
    deployment, which runs the same script through `gpucredit.run`)."""
    deployments = tmp_path / "deployments"
    result = subprocess.run(
        [sys.executable, "-m", "gpucredit.localchain", "run", "scripts/deploy.py"]
        + ["main", f"deployments_dir={deployments}"],
        cwd=checkout,
        env=_env(checkout, tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout[-3000:] + result.stderr[-3000:]
    assert result.returncode == 0, output
    assert "ModuleNotFoundError" not in output
    assert "Compiling" not in result.stdout  # the copied artifacts were used as they are
    contracts = _manifest_contracts(deployments / "31337.json")
    assert set(contracts) == set(CORE_CONTRACTS)


def test_the_documented_deploy_runs_again_after_the_local_chain_was_reset(checkout, tmp_path):
    """docs/deploy.md "Local chain": an anvil with chain id 31337 added as a network,
    the docs' deploy.yaml as written, deployed from the dotted checkout; then anvil
    restarts empty on the same port and the same command runs again."""
    config = tmp_path / "deploy.yaml"
    (docs_config,) = [block for block in docs_yaml_blocks() if "issuers:" in block]
    config.write_text(docs_config)
    chain = Anvil("--chain-id", "31337")
    try:
        net = LiveNetwork(chain.url, 31337, tmp_path, "local-anvil", repo=checkout)
        first = net.deploy(str(config), GPUCREDIT_DEPLOYER_KEY=ANVIL_KEY_0)
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
        before = net.manifest()
        assert before["roles"]["issuers"] == ["0x70997970C51812dc3A010C7d01b50e0d17dc79C8"]
        assert len(before["roles"]["oracle_signers"]) == 3
        # brownie keeps its own record of each contract: what made the re-run crash
        records = checkout / "build" / "deployments" / "31337"
        assert len(list(records.glob("0x*.json"))) == len(CORE_CONTRACTS)

        chain.stop()
        chain = Anvil("--chain-id", "31337", port=chain.port)  # a new, empty chain
        assert not chain.w3.eth.get_code(before["contracts"]["telemetry_oracle"]["address"])

        again = net.deploy(str(config), GPUCREDIT_DEPLOYER_KEY=ANVIL_KEY_0)
        output = again.stdout[-4000:] + again.stderr[-3000:]
        assert again.returncode == 0, output
        assert "ContractNotFound" not in output
        assert "have no code there any more (was the chain reset?)" in again.stdout
        after = net.manifest()
        for key in CORE_CONTRACTS:
            assert chain.w3.eth.get_code(after["contracts"][key]["address"]), key
            assert f"no {CORE_CONTRACTS[key]} code at" in again.stdout or key == "stablecoin"
        assert after["roles"] == before["roles"]
        assert len(list(records.glob("0x*.json"))) == len(CORE_CONTRACTS)  # the new ones
    finally:
        chain.stop()
