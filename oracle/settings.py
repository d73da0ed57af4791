"""Node settings: environment variables (prefix ``GPUCREDIT_ORACLE_``) over an
optional settings file.

A pydantic model rather than ``pydantic-settings`` (which cannot share the
venv with eth-brownie): :meth:`Settings.from_env` reads every variable whose
name starts with the prefix, layered over the TOML or JSON file named by
``GPUCREDIT_ORACLE_SETTINGS_FILE``. Unknown keys are refused (a typo is an
error, not a silently ignored setting).

Secrets are never defaulted. The node's signer key comes from exactly one of
``SIGNER_KEY`` (hex) or ``KEYSTORE_FILE`` (an encrypted Ethereum keystore,
decrypted with ``KEYSTORE_PASSWORD`` or ``KEYSTORE_PASSWORD_FILE``); the
well-known development keys (anvil/hardhat mnemonic), placeholder passwords
and keystores whose key derivation is too cheap to resist guessing (scrypt
``n`` below 2**14, PBKDF2 below 2**17 rounds) are refused unless
``ALLOW_DEV_KEYS`` is set, which only a local chain should.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import is_address, to_checksum_address
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from oracle.errors import ConfigError
from oracle.quorum_rule import node_set_violation

ENV_PREFIX = "GPUCREDIT_ORACLE_"
SETTINGS_FILE_VAR = ENV_PREFIX + "SETTINGS_FILE"
DEV_MNEMONIC = "test test test test test test test test test test test junk"
PLACEHOLDER_PASSWORDS = frozenset({"", "password", "changeme", "change-me", "secret", "test"})
_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_REPO_ROOT = Path(__file__).resolve().parents[1]
_LIST_FIELDS = {"peers", "fleets", "cors_origins"}
MIN_SCRYPT_N = 2**14
MIN_PBKDF2_ROUNDS = 2**17


@lru_cache(maxsize=1)
def dev_private_keys() -> frozenset[str]:
    """The first 20 keys of the public development mnemonic (lower-case hex, no 0x)."""
    Account.enable_unaudited_hdwallet_features()
    return frozenset(
        Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}").key.hex()
        for i in range(20)
    )


class Settings(BaseModel):
    """Everything one oracle node needs; see docs/oracle-service.md for each key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rpc_url: str = Field(description="JSON-RPC endpoint of the chain")
    oracle_address: str = Field(description="TelemetryOracle contract address")
    database_url: str = Field(
        default="sqlite:///oracle.db",
        description="SQLAlchemy URL: sqlite:///path (default) or postgresql+psycopg://...",
    )
    signer_key: SecretStr | None = Field(default=None, description="hex private key")
    keystore_file: Path | None = Field(default=None, description="encrypted keystore JSON")
    keystore_password: SecretStr | None = None
    keystore_password_file: Path | None = None
    allow_dev_keys: bool = Field(
        default=False, description="accept the public anvil/hardhat keys (local chains only)"
    )
    peers: list[str] = Field(default_factory=list, description="base URLs of the other nodes")
    fault_bound: int | None = Field(
        default=None,
        ge=0,
        description="f: faulty nodes the set (this node + peers) must tolerate; start-up "
        "refuses fewer than 3f + 1 nodes (oracle.quorum_rule). Default: floor((n - 1) / 3)",
    )
    fleets: list[int] = Field(
        default_factory=list, description="fleets to report even before telemetry arrives"
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8700, ge=0, le=65535)
    node_name: str = Field(default="oracle", max_length=64)
    settle_seconds: int = Field(
        default=300, ge=0, description="grace after a period ends for late telemetry"
    )
    quorum_wait_seconds: int = Field(
        default=60, ge=0, description="wait this long for every signer before posting a quorum"
    )
    max_clock_skew_seconds: int = Field(default=60, ge=0, le=3600)
    clock: Literal["system", "chain"] = Field(
        default="system",
        description="what 'now' is: the wall clock, or the latest block's timestamp "
        "(local chains whose time is moved by hand)",
    )
    clock_cache_seconds: float = Field(
        default=1.0, ge=0, description="with clock=chain: re-read the block time at most this often"
    )
    fleet_cache_seconds: float = Field(default=15.0, ge=0)
    poll_interval_seconds: float = Field(default=5.0, gt=0)
    peer_timeout_seconds: float = Field(default=3.0, gt=0)
    rpc_timeout_seconds: float = Field(default=10.0, gt=0)
    tx_timeout_seconds: float = Field(
        default=120.0, gt=0, description="a sent transaction still unmined after this is re-priced"
    )
    gas_limit_margin_bps: int = Field(default=2_000, ge=0, le=50_000)
    close_periods: bool = Field(default=True, description="call closePeriod() on the consumer")
    mark_missed: bool = Field(default=True, description="call markMissed() on stale periods")
    from_block: int = Field(default=0, ge=0, description="first block scanned for report events")
    artifacts_dir: Path = Field(default=_REPO_ROOT / "build" / "contracts")
    log_level: str = "info"
    access_log: bool = False
    max_body_bytes: int = Field(
        default=1_048_576,
        ge=1_024,
        le=64 * 1_048_576,
        description="largest request body accepted; larger ones get 413",
    )
    rate_limit_per_minute: int = Field(
        default=600, ge=1, description="telemetry batches one operator may push a minute"
    )
    rate_limit_burst: int = Field(
        default=120, ge=1, description="batches an operator may push at once before 429"
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="browser origins allowed to call the API; empty (default): CORS off",
    )
    chain_wait_seconds: float = Field(
        default=30.0, ge=0, description="how long start-up waits for the RPC endpoint"
    )

    @field_validator("oracle_address")
    @classmethod
    def _checksum(cls, value: str) -> str:
        if not is_address(value):
            raise ValueError("not an address")
        return to_checksum_address(value)

    @field_validator("peers")
    @classmethod
    def _peer_urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"peer {url!r} is not an http(s) URL")
        return [url.rstrip("/") for url in value]

    @model_validator(mode="after")
    def _fault_rule(self) -> Settings:
        if len(set(self.peers)) != len(self.peers):
            raise ValueError("a peer is listed twice (it would count as two nodes)")
        if self.fault_bound is not None:
            problem = node_set_violation(1 + len(self.peers), self.fault_bound)
            if problem is not None:
                raise ValueError(problem)
        return self

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            scheme, _, rest = origin.partition("://")
            if scheme not in ("http", "https") or not rest or "/" in rest.rstrip("/"):
                raise ValueError(f"{origin!r} is not an origin (scheme://host[:port]); no '*'")
        return [origin.rstrip("/") for origin in value]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Loads the settings file (if any) and overlays the environment."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        settings_file = environ.get(SETTINGS_FILE_VAR)
        if settings_file:
            values.update(_read_settings_file(Path(settings_file)))
        for name, raw in environ.items():
            if not name.startswith(ENV_PREFIX) or name == SETTINGS_FILE_VAR:
                continue
            key = name[len(ENV_PREFIX) :].lower()
            values[key] = _parse_list(raw) if key in _LIST_FIELDS else raw
        try:
            settings = cls(**values)
        except ValidationError as exc:
            problems = "; ".join(
                f"{ENV_PREFIX}{'.'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
                for err in exc.errors()
            )
            raise ConfigError(f"invalid oracle settings: {problems}") from None
        settings.load_account()  # refuse missing or default secrets now, not at first use
        return settings

    def load_account(self) -> LocalAccount:
        """The node's signer account, refusing missing and well-known keys."""
        if (self.signer_key is None) == (self.keystore_file is None):
            raise ConfigError(
                f"set exactly one of {ENV_PREFIX}SIGNER_KEY or {ENV_PREFIX}KEYSTORE_FILE"
            )
        if self.signer_key is not None:
            key_hex = self.signer_key.get_secret_value().strip()
        else:
            assert self.keystore_file is not None
            key_hex = _decrypt_keystore(
                self.keystore_file, self._keystore_password(), self.allow_dev_keys
            )
        key_hex = key_hex.removeprefix("0x").lower()
        try:
            key = bytes.fromhex(key_hex)
        except ValueError:
            raise ConfigError("the signer key is not hex") from None
        secret = int.from_bytes(key, "big")
        if len(key) != 32 or not 1 <= secret < _SECP256K1_N:
            raise ConfigError("the signer key is not a 32-byte secp256k1 private key")
        if secret < 2**128:
            raise ConfigError("the signer key is trivially guessable")
        if not self.allow_dev_keys and key_hex in dev_private_keys():
            raise ConfigError(
                "the signer key is a public development key; use a real key "
                f"(or {ENV_PREFIX}ALLOW_DEV_KEYS=1 on a local chain)"
            )
        return Account.from_key(key)

    def _keystore_password(self) -> str:
        if (self.keystore_password is None) == (self.keystore_password_file is None):
            raise ConfigError(
                f"set exactly one of {ENV_PREFIX}KEYSTORE_PASSWORD or "
                f"{ENV_PREFIX}KEYSTORE_PASSWORD_FILE"
            )
        if self.keystore_password is not None:
            password = self.keystore_password.get_secret_value()
        else:
            assert self.keystore_password_file is not None
            try:
                password = self.keystore_password_file.read_text().rstrip("\r\n")
            except OSError as exc:
                raise ConfigError(f"cannot read the keystore password file: {exc}") from None
        if not self.allow_dev_keys and password.lower() in PLACEHOLDER_PASSWORDS:
            raise ConfigError("the keystore password is empty or a placeholder")
        return password


def _decrypt_keystore(path: Path, password: str, allow_weak: bool = False) -> str:
    try:
        keystore = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the keystore file {path}: {exc}") from None
    weakness = _keystore_weakness(keystore)
    if weakness and not allow_weak:
        raise ConfigError(f"the keystore {path} is not safely encrypted: {weakness}")
    try:
        return Account.decrypt(keystore, password).hex()
    except ValueError:
        raise ConfigError(f"cannot decrypt {path}: wrong password or corrupt keystore") from None


def _keystore_weakness(keystore: Any) -> str | None:
    """Why a V3 keystore does not protect its key, or None."""
    if not isinstance(keystore, dict):
        return "not an encrypted Ethereum keystore (not a JSON object)"
    crypto = keystore.get("crypto") or keystore.get("Crypto")
    if not isinstance(crypto, dict) or "ciphertext" not in crypto:
        return "not an encrypted Ethereum keystore (no crypto.ciphertext)"
    kdf = crypto.get("kdf")
    params = crypto.get("kdfparams") or {}
    if kdf == "scrypt":
        if int(params.get("n", 0)) < MIN_SCRYPT_N:
            return f"scrypt n={params.get('n')} is below {MIN_SCRYPT_N}"
        return None
    if kdf == "pbkdf2":
        if int(params.get("c", 0)) < MIN_PBKDF2_ROUNDS:
            return f"pbkdf2 c={params.get('c')} is below {MIN_PBKDF2_ROUNDS}"
        return None
    return f"unknown key derivation {kdf!r}"


def _read_settings_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read the settings file {path}: {exc}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except ValueError as exc:
        raise ConfigError(f"cannot parse the settings file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"the settings file {path} must hold a table of settings")
    return {str(key).lower(): value for key, value in data.items()}


def _parse_list(raw: str) -> list[str]:
    raw = raw.strip()
    if raw.startswith("["):
        try:
            parsed = json.loads(raw)
        except ValueError:
            raise ConfigError(f"cannot parse the JSON list {raw!r}") from None
        return parsed
    return [item.strip() for item in raw.split(",") if item.strip()]
