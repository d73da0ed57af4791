"""What "now" is for a node: the wall clock, or the chain's latest block time.

A node dates everything against "now": whether a telemetry timestamp is in
the future, whether a period is still open to telemetry
(``now < periodEnd + settle``), when to seal and sign a period, when the
quorum wait is over. In production that is the wall clock (``CLOCK=system``).

On a local chain whose time is moved by hand (anvil's ``evm_increaseTime``:
the demo runs a 30-day period in seconds), the wall clock and the chain
disagree by months. ``CLOCK=chain`` makes the node take the latest block's
timestamp as "now", re-read at most every ``CLOCK_CACHE_SECONDS``, so the
node follows the chain's time however it is moved. It is meant for local and
test chains only: on a real network, block time lags the wall clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from oracle.chain import Chain
from oracle.settings import Settings

Clock = Callable[[], float]


class ChainClock:
    """``now`` = the latest block's timestamp, cached for ``ttl`` seconds.

    Calling it may block on one RPC (when the cached value is older than
    ``ttl``); :meth:`refresh` always reads the chain. Thread-safe.
    """

    def __init__(self, chain: Chain, ttl: float) -> None:
        self._chain = chain
        self._ttl = ttl
        self._lock = threading.Lock()
        self._value: float | None = None
        self._read_at = 0.0

    def __call__(self) -> float:
        with self._lock:
            if self._value is not None and time.monotonic() - self._read_at < self._ttl:
                return self._value
        return self.refresh()

    def refresh(self) -> float:
        """Reads the latest block's timestamp now."""
        read_at = time.monotonic()
        value = float(self._chain.latest_block_timestamp())
        with self._lock:
            self._value, self._read_at = value, read_at
        return value


def make_clock(settings: Settings, chain: Chain) -> Clock:
    """The node's clock for ``settings.clock`` (``system`` or ``chain``)."""
    if settings.clock == "chain":
        return ChainClock(chain, settings.clock_cache_seconds)
    return time.time
