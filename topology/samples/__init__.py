"""Sample networks shipped with the project (`heat.csv`, `power.csv`), written by `generate`."""

from pathlib import Path

SAMPLES_DIR = Path(__file__).parent
HEAT_CSV = SAMPLES_DIR / "heat.csv"
POWER_CSV = SAMPLES_DIR / "power.csv"
PHONES_CSV = SAMPLES_DIR / "phones.csv"  # synthetic numbers of the heat sample's flats
