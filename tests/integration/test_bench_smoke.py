"""The storm peer benchmark (bench/storm_peer.py) in its quickest mode: it runs to the end
against Debian's prometheus-alertmanager and the service, and reports both."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_the_quick_storm_peer_run_reports_both_systems(tmp_path: Path) -> None:
    """Both systems take every call of the small storm, know every building and page."""
    if not (shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")):
        pytest.skip("prometheus-alertmanager is not installed (`make bench` installs it)")
    out = tmp_path / "storm_peer.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.storm_peer", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    figures = json.loads(out.read_text())
    for system in ("alertmanager", "service"):
        run = figures[system]
        assert run["accepted"] == run["calls"] == figures["calls"], (system, run)
        assert run["buildings_known"] == run["buildings"] == figures["buildings"], (system, run)
        assert run["notifications"] >= 1, (system, run)
        assert run["posts_per_s"] > 0 and run["all_known_s"] is not None, (system, run)
    assert figures["alertmanager"]["notifications"] >= figures["buildings"]  # a group each
    assert set(figures["ratios"]) == {"posts_per_s", "all_known_s", "notifications"}
    (steady,) = figures["steady"]
    assert steady["accepted"] == steady["calls"]
    assert steady["answered_within_drain"] == steady["calls"], steady
    assert "Alertmanager" in done.stdout and "outage-correlator" in done.stdout
