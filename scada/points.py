"""Point values to `scada_signal` events: pure, no I/O, no clock.

A point maps one control-system value to one network device:

- `breaker`: a breaker's status -> breaker_open / breaker_closed. IEC double points
  (1 off = open, 2 on = closed; 0 intermediate and 3 indeterminate say nothing), booleans
  (true = closed; `invert: true` where true means open/tripped) and strings.
- `alarm`: a boolean alarm -> alarm / normal.
- `supply_temp` and `pressure`: an analogue with a `low` threshold and `hysteresis`:
  below `low` -> supply_temp_low / pressure_low; back to normal only at `low + hysteresis`,
  so a value hovering at the threshold does not flap.

The `Mapper` keeps the last state of each point and emits only when the state (signal and
quality) changes and the source time is newer: a reconnect that reads back the same state,
or an old value replayed by the source, gives no new event. Event ids come from the point,
the state and the source time, so the same change sent twice has the same id and the
correlator drops the copy.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from events.inbound import Quality, ScadaSignal, Signal

if TYPE_CHECKING:
    from scada.sources.base import PointUpdate

PointKind = Literal["breaker", "alarm", "supply_temp", "pressure"]
ANALOGUE_KINDS: dict[str, Signal] = {"supply_temp": "supply_temp_low", "pressure": "pressure_low"}
_OPEN_WORDS = frozenset({"open", "opened", "off", "trip", "tripped", "false", "0"})
_CLOSED_WORDS = frozenset({"closed", "close", "on", "true", "1"})


class PointConfig(BaseModel):
    """One point of a source, mapped to a device of the network model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    point: str = Field(min_length=1, max_length=300, description="The source's address.")
    device: str = Field(min_length=1, max_length=200, description="Network model device id.")
    kind: PointKind = "breaker"
    invert: bool = Field(default=False, description="Breaker/alarm: true means open/alarm off.")
    low: float | None = Field(default=None, description="Analogue: alarm below this value.")
    hysteresis: float = Field(default=0.0, ge=0, description="Analogue: normal at low + this.")
    line: int | None = Field(default=None, exclude=True, description="Line in the config file.")

    @model_validator(mode="after")
    def _threshold_for_analogues(self) -> Self:
        if self.kind in ANALOGUE_KINDS and self.low is None:
            raise ValueError(f"a {self.kind} point needs `low` (the alarm threshold)")
        if self.kind not in ANALOGUE_KINDS and self.low is not None:
            raise ValueError(f"`low` is for supply_temp and pressure points, not {self.kind}")
        return self


@dataclass(frozen=True)
class PointState:
    signal: Signal
    quality: Quality
    source_time: datetime
    timed: bool = True  # source_time is the source's own (False: the connector's receive time)


def signal_for(point: PointConfig, value: object, last: Signal | None = None) -> Signal | None:
    """The signal a value means for this point, or None when it says nothing (intermediate)."""
    if point.kind in ANALOGUE_KINDS:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            return None
        try:
            number = float(value)
        except ValueError:
            return None
        assert point.low is not None
        fault = ANALOGUE_KINDS[point.kind]
        if number < point.low:
            return fault
        if last == fault and number < point.low + point.hysteresis:
            return fault  # inside the hysteresis band: stays in alarm
        return "normal"
    closed = _as_bool(value)
    if closed is None:
        return None
    if point.kind == "alarm":
        return "normal" if closed == point.invert else "alarm"
    return "breaker_open" if closed == point.invert else "breaker_closed"


def _as_bool(value: object) -> bool | None:
    """True for closed/on/alarm, False for open/off, None for an indeterminate state."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        # IEC double point: 1 = off (open), 2 = on (closed); 0 and 3 say nothing.
        return {1: False, 2: True}.get(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _CLOSED_WORDS:
            return True
        if word in _OPEN_WORDS:
            return False
    return None


class Mapper:
    """Turns the point updates of one source into scada_signal events, once per change."""

    def __init__(self, site: str, source: str, points: tuple[PointConfig, ...]) -> None:
        self.site = site
        self.source = source
        self.points = {p.point: p for p in points}
        self.states: dict[str, PointState] = {}

    def update(self, update: PointUpdate, received_at: datetime) -> ScadaSignal | None:
        """The event this update means, or None (unknown point, no change, or older)."""
        point = self.points.get(update.point)
        if point is None:
            return None
        last = self.states.get(update.point)
        signal = signal_for(point, update.value, last.signal if last else None)
        if signal is None:
            return None
        at = update.source_time or received_at
        timed = update.source_time is not None
        if last is not None:
            # Only source times compare: a receive time says nothing of the source's clock.
            if timed and last.timed and at <= last.source_time:
                return None  # replayed or reordered: the source already told us newer
            if (signal, update.quality) == (last.signal, last.quality):
                return None  # same state read back (after a reconnect, an integrity poll)
        self.states[update.point] = PointState(signal, update.quality, at, timed)
        return ScadaSignal(
            event_id=self.event_id(update.point, signal, update.quality, at),
            occurred_at=at,
            recorded_at=received_at,
            recorded_by=f"scada:{self.site}/{self.source}",
            device_id=point.device,
            signal=signal,
            quality=update.quality,
        )

    def forget(self, point: str, previous: PointState | None) -> None:
        """Undo the last update of a point (its event could not be sent)."""
        if previous is None:
            self.states.pop(point, None)
        else:
            self.states[point] = previous

    def event_id(self, point: str, signal: str, quality: str, at: datetime) -> str:
        key = "\x00".join((self.site, self.source, point, signal, quality, at.isoformat()))
        return f"scada-{hashlib.sha256(key.encode()).hexdigest()[:32]}"

    def export(self) -> dict[str, dict[str, Any]]:
        """The last state of every point, as JSON (kept on disk across connector restarts)."""
        return {
            point: {
                "signal": s.signal,
                "quality": s.quality,
                "at": s.source_time.isoformat(),
                "timed": s.timed,
            }
            for point, s in self.states.items()
        }

    def restore(self, saved: dict[str, dict[str, Any]]) -> None:
        """Take back what `export` gave; points no longer configured are dropped."""
        for point, s in saved.items():
            if point in self.points:
                self.states[point] = PointState(
                    s["signal"],  # written by export from a Signal
                    s["quality"],  # written by export from a Quality
                    datetime.fromisoformat(s["at"]),
                    bool(s.get("timed", True)),
                )
