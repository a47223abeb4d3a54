"""`outage scada points | check | run`: generated mappings load, bad configs exit 2 with a line."""

from pathlib import Path

import pytest
import yaml

from cli.main import main
from scada.config import load
from topology.samples import POWER_CSV


def site_with(points_yaml: str) -> str:
    indented = "\n".join("      " + line for line in points_yaml.splitlines() if line)
    return (
        "site: north\nsources:\n  - name: rtu-7\n    type: mqtt\n    host: 127.0.0.1\n"
        f"    points:\n{indented}\n"
    )


def test_points_are_generated_per_breaker_device_and_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One breaker point per substation and feeder, addressed by template, passes the check."""
    args = ["scada", "points", "--topology", str(POWER_CSV), "--address", "plant/{device}/state"]
    assert main(args) == 0
    out = capsys.readouterr().out
    points = yaml.safe_load(out)
    assert [p["device"] for p in points] == ["SUB1", "FDR-1", "FDR-2", "FDR-3"]
    assert points[1] == {"point": "plant/FDR-1/state", "device": "FDR-1", "kind": "breaker"}
    config = tmp_path / "scada.yaml"
    config.write_text(site_with(out))
    assert len(load(config, (POWER_CSV,)).sources[0].points) == 4


def test_check_refuses_an_unknown_device_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`check` exits 2 naming the file, line and device; a good config prints ok."""
    monkeypatch.setenv("OUTAGE_TOPOLOGY", f'["{POWER_CSV}"]')
    config = tmp_path / "scada.yaml"
    config.write_text(site_with("- {point: a, device: FDR-1}\n- {point: b, device: FDR-77}"))
    assert main(["scada", "check", "--config", str(config)]) == 2
    assert f"{config}:8: point 'b'" in capsys.readouterr().err
    config.write_text(site_with("- {point: a, device: FDR-1}"))
    assert main(["scada", "check", "--config", str(config)]) == 0
    assert "1 sources, 1 points: ok" in capsys.readouterr().out


def test_run_without_a_broker_says_how_to_find_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`run` with no OUTAGE_BROKER exits 2 and says where the broker address comes from."""
    monkeypatch.delenv("OUTAGE_BROKER", raising=False)
    config = tmp_path / "scada.yaml"
    config.write_text(site_with("- {point: a, device: FDR-1}"))
    assert main(["scada", "run", "--config", str(config)]) == 2
    assert "OUTAGE_BROKER" in capsys.readouterr().err
