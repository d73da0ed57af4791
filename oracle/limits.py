"""Request limits: body size (ASGI middleware) and per-operator rate (token bucket).

A body larger than ``max_body_bytes`` is refused with 413 before the
application reads it: by its ``Content-Length`` when that says so, and in any
case by counting the bytes actually received (a small ``Content-Length`` next
to ``Transfer-Encoding: chunked`` does not lift the limit).

Telemetry batches are rate-limited per operator, after the batch signature
proved who the operator is (so nobody can spend another operator's budget
with forged batches): ``rate_limit_per_minute`` batches a minute with bursts
of ``rate_limit_burst``; beyond that 429 with ``Retry-After``.
Connection- and IP-level limits belong in the TLS proxy in front
(docs/oracle-service.md, "Production").
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from oracle.errors import RateLimited


class TokenBucket:
    """Per-key token buckets: `rate` tokens a second, at most `burst` saved up.

    Thread-safe. Keeps at most `max_keys` buckets: the least recently used
    is dropped first (a dropped key starts again with a full bucket).
    """

    def __init__(
        self,
        rate_per_second: float,
        burst: int,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate_per_second <= 0 or burst < 1:
            raise ValueError("rate and burst must be positive")
        self._rate = rate_per_second
        self._burst = float(burst)
        self._max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str) -> float:
        """Spends one token of `key`: 0.0 if there was one, else seconds until there is."""
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.pop(key, (self._burst, now))
            tokens = min(self._burst, tokens + (now - last) * self._rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                wait = 0.0
            else:
                self._buckets[key] = (tokens, now)
                wait = (1.0 - tokens) / self._rate
            while len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        return wait


class OperatorRateLimit:
    """Raises :class:`RateLimited` when an operator pushes faster than allowed."""

    def __init__(self, per_minute: int, burst: int, clock: Callable[[], float] = time.monotonic):
        self.per_minute = per_minute
        self._bucket = TokenBucket(per_minute / 60.0, burst, clock=clock)

    def check(self, operator: str) -> None:
        wait = self._bucket.take(operator.lower())
        if wait > 0:
            retry_after = max(1, math.ceil(wait))
            raise RateLimited(
                f"operator {operator} exceeds {self.per_minute} batches a minute",
                {"operator": operator, "retry_after_seconds": retry_after},
            )


def _error_body(code: str, message: str, detail: object) -> bytes:
    return json.dumps({"error": {"code": code, "message": message, "detail": detail}}).encode()


class BodySizeLimit:
    """Pure ASGI middleware: 413 for bodies over `max_bytes`, 400 for a bad length.

    The limit holds on the bytes actually received, whatever the framing: a
    declared ``Content-Length`` over the limit is refused at once, and every
    body (declared length, chunked, or both headers at once, which h11 frames
    as chunked) is read here up to the limit and counted as it streams in; the
    first byte past the limit answers 413 and closes the connection, so the
    rest is never read. The application then reads the buffered body (at
    most ``max_bytes``).
    """

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                if not value.isdigit():
                    await self._reject(
                        send, 400, "length_invalid", "Content-Length is not a number"
                    )
                    return
                if int(value) > self.max_bytes:
                    await self._too_large(send)
                    return

        messages, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                messages.append(message)
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._too_large(send)
                return
            messages.append(message)
            if not message.get("more_body", False):
                break

        async def replay():
            if messages:
                return messages.pop(0)
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send) -> None:
        await self._reject(
            send,
            413,
            "body_too_large",
            f"the request body exceeds {self.max_bytes} bytes",
            {"max_bytes": self.max_bytes},
        )

    @staticmethod
    async def _reject(send, status: int, code: str, message: str, detail=None) -> None:
        body = _error_body(code, message, detail)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
