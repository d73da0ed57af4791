"""Keeps the node's secrets out of its logs and its error responses.

Secrets are registered once at start-up (:func:`register_settings`): the
signer key, the keystore password, the database password, and the parts of
the RPC URL and peer URLs that carry credentials (user info, and the path and
query where hosted RPC providers put API keys). :func:`redact` masks them in
any text. :func:`install` adds a log-record factory that masks them in every
record of every logger (uvicorn's included), exception tracebacks too; the
API's error handler masks them in response bodies. Exceptions such as
``requests.ConnectionError`` quote the URL they failed on, so an RPC outage
would otherwise print the provider's API key.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from oracle.settings import Settings

MASK = "***"
_MIN_SECRET = 4  # shorter strings would mask ordinary text
_lock = threading.Lock()
_secrets: tuple[str, ...] = ()
_installed = False


def register(values: Iterable[str | None]) -> None:
    """Adds secret strings to mask (longest first, so no secret leaks a suffix)."""
    global _secrets
    with _lock:
        merged = set(_secrets) | {v for v in values if v and len(v) >= _MIN_SECRET}
        _secrets = tuple(sorted(merged, key=len, reverse=True))


def clear() -> None:
    """Forgets every registered secret (tests)."""
    global _secrets
    with _lock:
        _secrets = ()


def redact(text: str) -> str:
    """`text` with every registered secret replaced by ``***``."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def redact_data(value: Any) -> Any:
    """:func:`redact` applied to every string inside JSON-like data."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: redact_data(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact_data(item) for item in value]
    return value


def url_secrets(url: str, with_path: bool = True) -> list[str]:
    """The parts of a URL that may be credentials: the password and the whole
    user info and, with `with_path`, the path and query (where hosted RPC
    providers put API keys). A user name alone is not a secret."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    found = [parts.password or ""]
    if "@" in parts.netloc:
        found.append(parts.netloc.rsplit("@", 1)[0])
    tail = parts.path.rstrip("/") + (f"?{parts.query}" if parts.query else "")
    if with_path and len(tail) > 1:
        found.append(tail.lstrip("/"))
    return found


def settings_secrets(settings: Settings, account: LocalAccount | None = None) -> list[str]:
    """Every secret a node's settings hold."""
    found: list[str] = []
    if account is not None:
        key = account.key.hex().removeprefix("0x")
        found += [key, "0x" + key]
    if settings.signer_key is not None:
        raw = settings.signer_key.get_secret_value().strip()
        found += [raw, raw.removeprefix("0x")]
    if settings.keystore_password is not None:
        found.append(settings.keystore_password.get_secret_value())
    if settings.keystore_password_file is not None:
        with contextlib.suppress(OSError):
            found.append(settings.keystore_password_file.read_text().rstrip("\r\n"))
    found += url_secrets(settings.rpc_url)
    for peer in settings.peers:
        found += url_secrets(peer, with_path=False)  # peers' paths are API routes
    try:
        from sqlalchemy.engine import make_url

        found.append(make_url(settings.database_url).password or "")
    except Exception:  # noqa: BLE001 - an unparsable URL fails later, loudly
        pass
    return found


def register_settings(settings: Settings, account: LocalAccount | None = None) -> None:
    register(settings_secrets(settings, account))


def _scrub(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a malformed record is logging's problem
        return
    cleaned = redact(message)
    if cleaned != message:
        record.msg, record.args = cleaned, None
    if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
        record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


def install() -> None:
    """Masks registered secrets in every log record from now on (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            if _secrets:
                _scrub(record)
            return record

        logging.setLogRecordFactory(factory)
        _installed = True
