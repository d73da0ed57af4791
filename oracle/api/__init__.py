"""HTTP API: one router per resource (telemetry, fleets, observations,
reports, transactions, health, metrics)."""
