"""Write a fleet CSV for `gpucredit operator register`, with one attestation file per GPU.

    python examples/make_fleet.py --gpus 1000 --out /tmp/fleet     # -> /tmp/fleet/fleet.csv
    gpucredit operator register /tmp/fleet/fleet.csv --note 1

Every GPU gets an attestation document (JSON: the facts an attestor checked:
vendor, serial, model, site, rack, power, firmware, inspection date) in
`<out>/attestations/<serial>.json`; the CSV names it and the CLI hashes it
into the GPU's Merkle leaf. The numbers follow the demo's story: H100 SXM5
at $25,000, in service `--days-in-service` days ago, depreciation class 1.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from datetime import UTC, datetime
from pathlib import Path

MODEL = "NVIDIA H100 SXM5 80GB"


def write_fleet(
    out: Path,
    gpus: int,
    *,
    prefix: str = "H100-",
    site: str = "ashburn-1",
    cost: int = 25_000,
    in_service: int | None = None,
    model: str = MODEL,
    class_id: int = 1,
) -> Path:
    """Writes `<out>/fleet.csv` and `<out>/attestations/`; returns the CSV path."""
    out.mkdir(parents=True, exist_ok=True)
    documents = out / "attestations"
    documents.mkdir(exist_ok=True)
    in_service = in_service if in_service is not None else int(time.time()) - 30 * 86_400
    day = datetime.fromtimestamp(in_service, UTC).date().isoformat()
    path = out / "fleet.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["vendor", "serial", "model", "site", "cost", "in_service", "attestation", "class"]
        )
        for i in range(gpus):
            serial = f"{prefix}{i:06d}"
            document = {
                "vendor": "NVIDIA",
                "serial": serial,
                "model": model,
                "site": site,
                "rack": f"R{i // 32:03d}",
                "slot": i % 32,
                "rack_power_kw": 40,
                "firmware": "96.00.74.00.01",
                "inspected_on": day,
                "inspector": "example attestor",
            }
            (documents / f"{serial}.json").write_text(json.dumps(document, sort_keys=True) + "\n")
            writer.writerow(
                [
                    "NVIDIA",
                    serial,
                    model,
                    site,
                    cost,
                    in_service,
                    f"attestations/{serial}.json",
                    class_id,
                ]
            )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpus", type=int, default=1_000, help="number of GPUs (default 1,000)")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--prefix", default="H100-", help="serial number prefix")
    parser.add_argument("--site", default="ashburn-1", help="data-centre site name")
    parser.add_argument("--cost", type=int, default=25_000, help="cost per GPU, whole USD")
    parser.add_argument(
        "--days-in-service", type=int, default=30, help="how long ago the GPUs went into service"
    )
    args = parser.parse_args()
    in_service = int(time.time()) - args.days_in_service * 86_400
    path = write_fleet(
        args.out,
        args.gpus,
        prefix=args.prefix,
        site=args.site,
        cost=args.cost,
        in_service=in_service,
    )
    print(f"{args.gpus:,} GPUs -> {path}")


if __name__ == "__main__":
    main()
