"""Settings: environment over a settings file, no default secrets."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from eth_account import Account

from oracle.errors import ConfigError
from oracle.settings import Settings, dev_private_keys

ORACLE = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
KEY = Account.create()


def env(**values):
    base = {
        "GPUCREDIT_ORACLE_RPC_URL": "http://127.0.0.1:8545",
        "GPUCREDIT_ORACLE_ORACLE_ADDRESS": ORACLE.lower(),
    }
    base.update({f"GPUCREDIT_ORACLE_{k.upper()}": str(v) for k, v in values.items()})
    return base


def test_environment_builds_settings():
    s = Settings.from_env(
        env(signer_key=KEY.key.hex(), peers="http://a:1/, http://b:2", fleets="[1, 2]")
        | {"UNRELATED": "x"}
    )
    assert s.oracle_address == ORACLE
    assert s.peers == ["http://a:1", "http://b:2"]
    assert s.fleets == [1, 2]
    assert s.load_account().address == KEY.address
    assert "0x" not in repr(s.signer_key) and KEY.key.hex() not in repr(s)


@pytest.mark.parametrize(
    "values, message",
    [
        ({}, "exactly one of"),
        ({"signer_key": "0x" + "00" * 31 + "01"}, "trivially guessable"),
        ({"signer_key": "zz"}, "not hex"),
        ({"signer_key": "0x" + "ff" * 32}, "not a 32-byte"),
        ({"signer_key": "0x" + sorted(dev_private_keys())[0]}, "public development key"),
        ({"signer_key": KEY.key.hex(), "colour": "blue"}, "COLOUR"),
        ({"signer_key": KEY.key.hex(), "port": "http"}, "PORT"),
        ({"signer_key": KEY.key.hex(), "peers": "ftp://x"}, "PEERS"),
    ],
)
def test_refused_settings(values, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env(**values))


def test_dev_key_only_with_explicit_opt_in():
    dev = sorted(dev_private_keys())[0]
    assert Settings.from_env(env(signer_key=dev, allow_dev_keys="true")).load_account()


def test_encrypted_keystore(tmp_path):
    keystore = tmp_path / "node.json"
    keystore.write_text(json.dumps(Account.encrypt(KEY.key, "correct horse", iterations=2**14)))
    password_file = tmp_path / "password"
    password_file.write_text("correct horse\n")
    s = Settings.from_env(env(keystore_file=keystore, keystore_password_file=password_file))
    assert s.load_account().address == KEY.address
    with pytest.raises(ConfigError, match="wrong password"):
        Settings.from_env(env(keystore_file=keystore, keystore_password="incorrect"))
    with pytest.raises(ConfigError, match="placeholder"):
        Settings.from_env(env(keystore_file=keystore, keystore_password="changeme"))
    with pytest.raises(ConfigError, match="exactly one of"):
        Settings.from_env(env(keystore_file=keystore))
    with pytest.raises(ConfigError, match="exactly one of"):
        Settings.from_env(env(keystore_file=keystore, signer_key=KEY.key.hex()))


def test_settings_file_under_environment(tmp_path):
    toml = tmp_path / "oracle.toml"
    toml.write_text('settle_seconds = 42\nport = 9000\npeers = ["http://peer:1"]\n')
    s = Settings.from_env(env(signer_key=KEY.key.hex(), settings_file=toml, port=9100))
    assert (s.settle_seconds, s.port, s.peers) == (42, 9100, ["http://peer:1"])
    bad = tmp_path / "bad.json"
    bad.write_text("[1]")
    with pytest.raises(ConfigError, match="table of settings"):
        Settings.from_env(env(signer_key=KEY.key.hex(), settings_file=bad))


def test_main_refuses_to_start_without_a_key():
    result = subprocess.run(
        [sys.executable, "-m", "oracle"],
        env=env() | {"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]),
    )
    assert result.returncode == 2
    assert "GPUCREDIT_ORACLE_SIGNER_KEY" in result.stderr
