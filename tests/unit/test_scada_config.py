"""Site configs: every error names the file and line; unknown devices are refused at start."""

from pathlib import Path

import pytest

from scada.config import ConfigError, load
from scada.sources.base import SourceConfig
from topology.samples import POWER_CSV

GOOD = """\
site: north
utility: power
sources:
  - name: plant
    type: mqtt
    host: 127.0.0.1
    points:
      - {point: plant/FDR-1/state, device: FDR-1, kind: breaker}
      - point: plant/FDR-2/state
        device: FDR-2
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scada.yaml"
    path.write_text(text)
    return path


def test_a_good_config_loads_with_lines(tmp_path: Path) -> None:
    """A valid config gives typed sources whose points know their line in the file."""
    site = load(write(tmp_path, GOOD), (POWER_CSV,))
    (source,) = site.sources
    assert isinstance(source, SourceConfig) and source.type == "mqtt"
    assert [p.line for p in source.points] == [8, 9]


def test_unknown_device_is_refused_with_its_line(tmp_path: Path) -> None:
    """A point that maps to a device missing from the network model names file and line."""
    path = write(tmp_path, GOOD.replace("device: FDR-2", "device: FDR-99"))
    with pytest.raises(ConfigError, match=r"scada\.yaml:9: .*'FDR-99'.*not in the network model"):
        load(path, (POWER_CSV,))


def test_unknown_source_type_names_the_known_ones(tmp_path: Path) -> None:
    """A typo in `type` is refused with the source's line and the types there are."""
    with pytest.raises(ConfigError, match=r":4: unknown source type 'mqt'.*iec104"):
        load(write(tmp_path, GOOD.replace("type: mqtt", "type: mqt")))


def test_bad_point_field_names_the_point_line(tmp_path: Path) -> None:
    """A point with a wrong kind is refused with that point's line, not the source's."""
    path = write(tmp_path, GOOD.replace("kind: breaker", "kind: toaster"))
    with pytest.raises(ConfigError, match=r":8: source 'plant': points\.0\.kind"):
        load(path)


def test_duplicate_source_names_and_broken_yaml(tmp_path: Path) -> None:
    """Two sources with one name, or YAML that does not parse, are refused with the file."""
    doubled = GOOD + GOOD.split("sources:\n", 1)[1]
    with pytest.raises(ConfigError, match="unique"):
        load(write(tmp_path, doubled))
    with pytest.raises(ConfigError, match=r"scada\.yaml"):
        load(write(tmp_path, "site: [unclosed"))
