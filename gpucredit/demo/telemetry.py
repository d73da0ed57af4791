"""What the operator meters and uploads each period: a day-by-day fleet sample and
three customer invoices (the body `gpucredit operator push-telemetry` signs)."""

from __future__ import annotations

import importlib.util
from decimal import Decimal
from typing import Any

from gpucredit.demo.processes import REPO
from gpucredit.story import GPUS, period_revenue

DAY = 86_400


def telemetry_batch(period: int, start: int, utilization: int, uptime: int) -> dict[str, Any]:
    """One period's metering as the operator uploads it: a fleet sample per day
    (utilization varies day to day around the period's figure, which it averages
    exactly) and three customer invoices."""
    samples = []
    for day in range(30):
        swing = (day // 2 * 37) % 160 * (1 if day % 2 == 0 else -1)  # pairs cancel out
        samples.append(
            {
                "ts": start + day * DAY,
                "interval_seconds": DAY,
                "gpu_count": GPUS,
                "gpu_hours_available": str(GPUS * 24),
                "gpu_hours_used": str(Decimal(GPUS * 24 * (utilization + swing)) / 10_000),
                "uptime_seconds": -(-DAY * uptime // 10_000),  # rounded up: floors back to uptime
            }
        )
    revenue = period_revenue(utilization)
    take_or_pay, reserved = revenue // 2, revenue * 3 // 10
    invoices = [
        (5, "Acme AI", "take_or_pay", take_or_pay),
        (15, "Borealis Labs", "reserved", reserved),
        (28, "spot market", "spot", revenue - take_or_pay - reserved),
    ]
    return {
        "samples": samples,
        "revenue": [
            {
                "ts": start + day * DAY,
                "invoice_id": f"INV-{period + 1:02d}-{i + 1}",
                "amount": amount,
                "customer": customer,
                "contract_type": kind,
            }
            for i, (day, customer, kind, amount) in enumerate(invoices)
        ],
    }


def load_make_fleet():
    spec = importlib.util.spec_from_file_location("make_fleet", REPO / "examples" / "make_fleet.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
