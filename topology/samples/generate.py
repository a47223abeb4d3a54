"""Writes the sample networks `heat.csv` and `power.csv` next to this file.

Deterministic (no randomness, fixed ordering), so rerunning `python -m topology.samples.generate`
reproduces the committed files byte for byte; tests rely on the ids and addresses below.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from topology.load import FIELDS

Row = tuple[str, str, str, str, int, str, str, str]

HEAT_STREETS = ("Birch Street", "Alder Avenue", "Maple Road", "Linden Boulevard")
POWER_STREETS = (
    "West 133rd Street",
    "East 12th Avenue",
    "Harbour Road",
    "Quarry Lane",
    "North Mill Road",
    "Station Street",
    "Orchard Drive",
    "Kingfisher Court",
    "South Bridge Street",
    "Cannery Walk",
    "Lighthouse Place",
    "Tannery Square",
)


def _coord(value: float) -> str:
    return f"{value:.6f}"


def heat_rows() -> Iterator[Row]:
    """HS1 -> HSUB-1..4 -> 5 buildings each -> 12 flats each."""
    yield ("HS1", "heat_source", "", "heat", 0, "1 Foundry Lane", "52.515000", "13.395000")
    for s, street in enumerate(HEAT_STREETS, start=1):
        sub = f"HSUB-{s}"
        lat = 52.52 + (s - 1) * 0.004
        yield (sub, "heat_substation", "HS1", "heat", 0, "", _coord(lat), "13.398000")
        for b in range(1, 6):
            building = f"B-HSUB{s}-{b}"
            address = f"{10 + 2 * (b - 1)} {street}"
            lon = _coord(13.40 + (b - 1) * 0.0015)
            yield (building, "building", sub, "heat", 0, address, _coord(lat), lon)
            for flat in range(1, 13):
                yield (
                    f"P-HSUB{s}-B{b}-{flat:02d}",
                    "premise",
                    building,
                    "heat",
                    1,
                    f"{address}, flat {flat}",
                    _coord(lat),
                    lon,
                )


def power_rows() -> Iterator[Row]:
    """SUB1 -> FDR-1..3 -> 4 transformers -> 2 fuses -> 3 buildings -> 4 premises."""
    yield ("SUB1", "substation", "", "power", 0, "3 Dynamo Street", "52.495000", "13.425000")
    for f in range(1, 4):
        feeder = f"FDR-{f}"
        yield (
            feeder,
            "feeder",
            "SUB1",
            "power",
            0,
            "",
            _coord(52.50 + (f - 1) * 0.006),
            "13.428000",
        )
        for t in range(1, 5):
            street = POWER_STREETS[(f - 1) * 4 + (t - 1)]
            lat = _coord(52.50 + (f - 1) * 0.006 + (t - 1) * 0.0015)
            transformer = f"T-FDR{f}-{t}"
            yield (transformer, "transformer", feeder, "power", 0, "", lat, "13.429000")
            for u in range(1, 3):
                fuse = f"FU-FDR{f}-T{t}-{u}"
                yield (fuse, "fuse", transformer, "power", 0, "", lat, "13.429500")
                for b in range(1, 4):
                    building = f"B-FDR{f}-T{t}-F{u}-{b}"
                    address = f"{200 + 2 * ((u - 1) * 3 + b)} {street}"
                    lon = _coord(13.43 + ((u - 1) * 3 + b) * 0.001)
                    yield (building, "building", fuse, "power", 0, address, lat, lon)
                    for p in range(1, 5):
                        yield (
                            f"P-FDR{f}-T{t}-F{u}-B{b}-{p}",
                            "premise",
                            building,
                            "power",
                            1,
                            f"{address}, apt {p}",
                            lat,
                            lon,
                        )


def write(path: Path, rows: Iterator[Row]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(FIELDS)
        writer.writerows(rows)


def main() -> None:
    here = Path(__file__).parent
    write(here / "heat.csv", heat_rows())
    write(here / "power.csv", power_rows())


if __name__ == "__main__":
    main()
