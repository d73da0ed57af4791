"""A persistent anvil as a *live* brownie network, for the deployment tests.

Brownie keeps network definitions in `~/.brownie/network-config.yaml`
(`brownie._config.DATA_FOLDER`, derived from the home directory at import).
Each `LiveNetwork` gives brownie a home of its own (a temporary directory),
adds the anvil there with `brownie networks add` exactly as a user adds
Sepolia, and runs `python -m gpucredit.run scripts/deploy.py main ... --network
<id>` (docs/deploy.md) in subprocesses, so the user's ~/.brownie is never
touched. `repo` is the checkout the deployment runs from (this one by
default; a copy under another path in tests/service/test_deploy_anywhere.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from eth_account import Account

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# anvil's first dev account (public test key; local chains only)
ANVIL_KEY_0 = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"


class LiveNetwork:
    def __init__(
        self, rpc_url: str, chain_id: int, workdir: Path, name: str, repo: Path = REPO
    ) -> None:
        self.repo = repo
        self.rpc_url = rpc_url
        self.chain_id = chain_id
        self.home = workdir / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.deployments = workdir / "deployments"
        self.deployments.mkdir(exist_ok=True)
        self.name = name
        out = self.brownie(
            "networks", "add", "Ethereum", name, f"host={rpc_url}", f"chainid={chain_id}"
        )
        assert out.returncode == 0, out.stdout + out.stderr

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GPUCREDIT_", "PYTEST_"))}
        env.update(
            HOME=str(self.home),
            PATH=f"{REPO / 'node_modules' / '.bin'}:{BIN}:{env.get('PATH', '')}",
            SOLCX_BINARY_PATH=str(REPO / "tools" / "solc" / "bin"),
            VIRTUAL_ENV=str(BIN.parent),
            # the checkout's own gpucredit package, whatever the venv's editable install says
            PYTHONPATH=str(self.repo),
            GPUCREDIT_DEPLOYMENTS_DIR=str(self.deployments),
        )
        env.update(extra)
        return env

    def brownie(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return self._run([str(BIN / "brownie"), *args], **env)

    def _run(self, argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv,
            cwd=self.repo,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=300,
        )

    def deploy(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return self._run(
            [
                sys.executable,
                "-m",
                "gpucredit.run",
                "scripts/deploy.py",
                "main",
                *args,
                "--network",
                self.name,
            ],
            **env,
        )

    def add_keystore(self, account_id: str, key: str, password: str) -> str:
        """Puts `key` in brownie's keystore folder as `account_id`; returns its address."""
        folder = self.home / ".brownie" / "accounts"
        folder.mkdir(parents=True, exist_ok=True)
        encrypted = Account.encrypt(key, password, iterations=2**10)  # fast scrypt for tests
        (folder / f"{account_id}.json").write_text(json.dumps(encrypted))
        return Account.from_key(key).address

    @property
    def manifest_path(self) -> Path:
        return self.deployments / f"{self.chain_id}.json"

    def manifest(self) -> dict:
        return json.loads(self.manifest_path.read_text())
