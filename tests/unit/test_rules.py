"""Unit tests for the correlation rules: shipped defaults, overrides by file and by keyword."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from correlators.rules import DEFAULTS, CorrelationRules, LevelRule


def test_defaults_load_with_documented_thresholds() -> None:
    """The shipped defaults give the documented building and roll-up thresholds."""
    rules = CorrelationRules.load()
    assert rules.lateness_seconds == 0
    power = rules.for_utility("power")
    assert power.window() == timedelta(minutes=60)
    assert power.stale_after == timedelta(minutes=240)
    assert rules.level("power", "building") == LevelRule(
        min_reporters=3, whole_building_reporters=2
    )
    fuse = rules.level("power", "fuse")
    assert fuse is not None
    assert (fuse.min_reporters, fuse.min_children) == (3, 2)
    assert rules.for_utility("heat").window() == timedelta(minutes=180)


def test_every_utility_has_a_building_level() -> None:
    """Each utility in the defaults can recognise a building fault."""
    rules = CorrelationRules.load()
    for utility in ("heat", "power", "water", "cable", "telecom"):
        assert rules.level(utility, "building") is not None


def test_unlisted_kind_has_no_level() -> None:
    """A node kind not listed for a utility never holds a predicted incident."""
    assert CorrelationRules.load().level("power", "premise") is None


def test_level_window_overrides_utility_window() -> None:
    """A level's own window replaces the utility window, and the longest window counts both."""
    rules = CorrelationRules.load(power={"levels": {"feeder": {"window_minutes": 90}}})
    power = rules.for_utility("power")
    assert power.window("feeder") == timedelta(minutes=90)
    assert power.window("fuse") == timedelta(minutes=60)
    assert power.longest_window == timedelta(minutes=90)


def test_keyword_overrides_merge_over_defaults() -> None:
    """Keyword overrides replace only the values given; the rest keep their defaults."""
    rules = CorrelationRules.load(None, lateness_seconds=60, heat={"window_minutes": 600})
    assert rules.lateness == timedelta(seconds=60)
    assert rules.for_utility("heat").window() == timedelta(minutes=600)
    assert rules.for_utility("heat").stale_after == timedelta(minutes=360)
    assert rules.level("heat", "building") is not None
    assert rules.for_utility("power").window() == timedelta(minutes=60)


def test_file_overrides_merge_over_defaults(tmp_path: Path) -> None:
    """A user TOML file replaces the values it gives, nested tables included."""
    path = tmp_path / "rules.toml"
    path.write_text(
        "lateness_seconds = 30\n"
        "[power]\n"
        "window_minutes = 45\n"
        "levels.building = { min_reporters = 4, whole_building_reporters = 2 }\n"
    )
    rules = CorrelationRules.load(path)
    assert rules.lateness_seconds == 30
    assert rules.for_utility("power").window() == timedelta(minutes=45)
    building = rules.level("power", "building")
    assert building is not None and building.min_reporters == 4
    # Levels the file does not name keep their defaults.
    assert rules.level("power", "fuse") is not None
    assert rules.for_utility("power").stale_after == timedelta(minutes=240)


def test_keywords_win_over_the_file(tmp_path: Path) -> None:
    """Keyword overrides are applied after the file."""
    path = tmp_path / "rules.toml"
    path.write_text("lateness_seconds = 30\n")
    assert CorrelationRules.load(path, lateness_seconds=5).lateness_seconds == 5


def test_unparseable_file_is_refused_naming_the_file(tmp_path: Path) -> None:
    """A file that is not TOML raises ValueError naming the file."""
    path = tmp_path / "broken.toml"
    path.write_text("[power\nwindow_minutes = ")
    with pytest.raises(ValueError, match=r"broken\.toml"):
        CorrelationRules.load(path)


def test_missing_file_is_refused_naming_the_file(tmp_path: Path) -> None:
    """A file that does not exist raises ValueError naming it."""
    path = tmp_path / "absent.toml"
    with pytest.raises(ValueError, match=r"absent\.toml"):
        CorrelationRules.load(path)


@pytest.mark.parametrize(
    "body",
    [
        "[power]\nwindow_minutes = -5\n",
        "[power]\nsurprise = 1\n",
        "[power]\nlevels.building = { min_reporters = 0 }\n",
        "lateness_seconds = 'soon'\n",
    ],
)
def test_invalid_values_are_refused_naming_the_file(tmp_path: Path, body: str) -> None:
    """Values the rules do not accept raise ValueError naming the file at fault."""
    path = tmp_path / "bad-values.toml"
    path.write_text(body)
    with pytest.raises(ValueError, match=r"bad-values\.toml"):
        CorrelationRules.load(path)


def test_invalid_keyword_override_is_refused_naming_the_defaults() -> None:
    """A bad keyword override (no file given) is refused, naming the defaults it was merged on."""
    with pytest.raises(ValueError, match=str(DEFAULTS.name)):
        CorrelationRules.load(power={"window_minutes": 0})


@pytest.mark.parametrize(
    ("customers", "confirmed", "severity"),
    [
        (1, False, "info"),
        (1, True, "warning"),
        (50, False, "warning"),
        (499, True, "warning"),
        (500, False, "critical"),
    ],
)
def test_severity_by_customers_and_confirmation(
    customers: int, confirmed: bool, severity: str
) -> None:
    """Severity rises with customers affected; a confirmed incident is at least a warning."""
    assert CorrelationRules.load().severity(customers, confirmed) == severity
