"""A small thread-safe Prometheus registry (text exposition format 0.0.4)."""

from __future__ import annotations

import threading
from collections.abc import Iterable

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: tuple[str, ...], values: tuple[str, ...], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _num(value: float) -> str:
    if value == int(value) and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


class _Metric:
    kind = ""

    def __init__(self, name: str, doc: str, labels: Iterable[str] = ()) -> None:
        self.name = name
        self.doc = doc
        self.label_names = tuple(labels)
        self._lock = threading.Lock()

    def render(self) -> list[str]:
        raise NotImplementedError

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.doc}", f"# TYPE {self.name} {self.kind}"]


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name: str, doc: str, labels: Iterable[str] = ()) -> None:
        super().__init__(name, doc, labels)
        self._values: dict[tuple[str, ...], float] = {}

    def inc(self, amount: float = 1.0, *labels: str) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def value(self, *labels: str) -> float:
        with self._lock:
            return self._values.get(labels, 0.0)

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return self.header() + [
            f"{self.name}{_labels(self.label_names, k)} {_num(v)}" for k, v in items
        ]


class Gauge(Counter):
    kind = "gauge"

    def set(self, value: float, *labels: str) -> None:
        with self._lock:
            self._values[labels] = float(value)


class Histogram(_Metric):
    kind = "histogram"

    def __init__(
        self, name: str, doc: str, labels: Iterable[str] = (), buckets=DEFAULT_BUCKETS
    ) -> None:
        super().__init__(name, doc, labels)
        self.buckets = tuple(buckets)
        self._data: dict[tuple[str, ...], list[float]] = {}

    def observe(self, value: float, *labels: str) -> None:
        with self._lock:
            data = self._data.get(labels)
            if data is None:
                data = self._data[labels] = [0.0] * (len(self.buckets) + 2)
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    data[i] += 1
            data[-2] += 1  # count (the +Inf bucket)
            data[-1] += value

    def render(self) -> list[str]:
        with self._lock:
            items = sorted((k, list(v)) for k, v in self._data.items())
        lines = self.header()
        for key, data in items:
            for i, bound in enumerate(self.buckets):
                labels = _labels(self.label_names, key, f'le="{_num(bound)}"')
                lines.append(f"{self.name}_bucket{labels} {_num(data[i])}")
            inf = _labels(self.label_names, key, 'le="+Inf"')
            lines.append(f"{self.name}_bucket{inf} {_num(data[-2])}")
            lines.append(f"{self.name}_count{_labels(self.label_names, key)} {_num(data[-2])}")
            lines.append(f"{self.name}_sum{_labels(self.label_names, key)} {_num(data[-1])}")
        return lines


class Metrics:
    """Every metric the node exports."""

    def __init__(self) -> None:
        self.http_requests = Counter(
            "oracle_http_requests_total", "HTTP requests served", ("method", "route", "status")
        )
        self.http_seconds = Histogram(
            "oracle_http_request_seconds", "HTTP request latency", ("method", "route")
        )
        self.batches = Counter(
            "oracle_telemetry_batches_total", "telemetry batches by outcome", ("outcome",)
        )
        self.samples = Counter("oracle_telemetry_samples_total", "samples stored")
        self.revenue_events = Counter("oracle_revenue_events_total", "revenue events stored")
        self.observations_signed = Counter(
            "oracle_observations_signed_total", "observations this node signed"
        )
        self.peer_fetches = Counter(
            "oracle_peer_fetches_total", "peer observation fetches", ("peer", "outcome")
        )
        self.txs = Counter(
            "oracle_transactions_total", "transactions by action and outcome", ("action", "outcome")
        )
        self.chain_errors = Counter("oracle_chain_errors_total", "failed chain RPC interactions")
        self.worker_errors = Counter("oracle_worker_errors_total", "worker rounds that failed")
        self.worker_last_run = Gauge(
            "oracle_worker_last_run_timestamp_seconds", "end of the last worker round"
        )
        self.reported_period = Gauge(
            "oracle_last_reported_period", "latest period seen reported on-chain", ("fleet",)
        )
        self.block = Gauge("oracle_chain_block_number", "latest block seen")

    def render(self) -> str:
        lines: list[str] = []
        for metric in vars(self).values():
            if isinstance(metric, _Metric):
                lines.extend(metric.render())
        return "\n".join(lines) + "\n"
