"""Correlation rules: thresholds and windows per utility and node kind, from a TOML file.

The defaults ship in `defaults.toml` beside this module; a user file overrides any value.
"""

import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from events.derived import Severity

DEFAULTS = Path(__file__).with_name("defaults.toml")
UTILITIES = ("heat", "power", "water", "cable", "telecom")


class LevelRule(BaseModel):
    """What it takes to recognise a fault at one kind of node."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_reporters: int = Field(default=3, ge=1)
    min_children: int = Field(default=0, ge=0)
    min_child_share: float = Field(default=0.0, ge=0.0, le=1.0)
    min_customer_share: float = Field(default=0.0, ge=0.0, le=1.0)
    whole_building_reporters: int | None = Field(default=None, ge=1)
    window_minutes: float | None = Field(default=None, gt=0)


class UtilityRules(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    window_minutes: float = Field(gt=0)
    stale_after_minutes: float = Field(gt=0)
    handling_deadline_minutes: float = Field(default=240, gt=0)
    deadline_escalate_after_minutes: float = Field(default=60, gt=0)
    ack_within_minutes: float = Field(default=15, gt=0)
    ack_reminders: int = Field(default=2, ge=0)
    repeat_caller_calls: int = Field(default=3, ge=2)
    growth_levels: tuple[int, ...] = ()
    levels: dict[str, LevelRule] = {}

    def window(self, kind: str | None = None) -> timedelta:
        rule = self.levels.get(kind) if kind else None
        minutes = rule.window_minutes if rule and rule.window_minutes else self.window_minutes
        return timedelta(minutes=minutes)

    @property
    def longest_window(self) -> timedelta:
        return max([self.window(kind) for kind in self.levels] + [self.window()])

    @property
    def stale_after(self) -> timedelta:
        return timedelta(minutes=self.stale_after_minutes)

    @property
    def handling_deadline(self) -> timedelta:
        return timedelta(minutes=self.handling_deadline_minutes)


class CorrelationRules(BaseModel):
    """All rules of one deployment. Load with `CorrelationRules.load(path)`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    lateness_seconds: float = Field(default=0, ge=0)
    dedupe_hours: float = Field(default=48, gt=0)
    # How far ahead of the service's clock an event's time may be (senders' clocks drift);
    # the edge refuses more, and an event moves its domain's time no further than the moment
    # it was accepted plus this.
    clock_skew_seconds: float = Field(default=300, ge=0)
    # How far ahead planned works and ETRs may reach: a year and a month.
    plan_ahead_days: float = Field(default=400, gt=0)
    severity_warning_customers: int = 50
    severity_critical_customers: int = 500
    heat: UtilityRules
    power: UtilityRules
    water: UtilityRules
    cable: UtilityRules
    telecom: UtilityRules

    @property
    def lateness(self) -> timedelta:
        return timedelta(seconds=self.lateness_seconds)

    @property
    def dedupe_horizon(self) -> timedelta:
        return timedelta(hours=self.dedupe_hours)

    @property
    def clock_skew(self) -> timedelta:
        return timedelta(seconds=self.clock_skew_seconds)

    @property
    def plan_ahead(self) -> timedelta:
        return timedelta(days=self.plan_ahead_days)

    def for_utility(self, utility: str) -> UtilityRules:
        rules: UtilityRules = getattr(self, utility)
        return rules

    def handling_deadlines(self) -> dict[str, timedelta]:
        return {u: self.for_utility(u).handling_deadline for u in UTILITIES}

    def level(self, utility: str, kind: str) -> LevelRule | None:
        return self.for_utility(utility).levels.get(kind)

    def severity(self, customers: int, confirmed: bool = False) -> Severity:
        if customers >= self.severity_critical_customers:
            return "critical"
        if confirmed or customers >= self.severity_warning_customers:
            return "warning"
        return "info"

    @classmethod
    def load(cls, path: str | Path | None = None, **overrides: Any) -> "CorrelationRules":
        """The defaults, with a user file (if any) and keyword overrides merged over them."""
        body = tomllib.loads(DEFAULTS.read_text())
        if path:
            try:
                _merge(body, tomllib.loads(Path(path).read_text()))
            except (OSError, tomllib.TOMLDecodeError) as error:
                raise ValueError(f"cannot read correlation rules {path}: {error}") from None
        _merge(body, overrides)
        try:
            return cls.model_validate(body)
        except ValidationError as error:
            raise ValueError(f"invalid correlation rules {path or DEFAULTS}: {error}") from None


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
