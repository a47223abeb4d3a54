"""The alerting configuration: receivers, shift roster, routing tree, silences, SMTP, delivery.

Loaded from one TOML file (see deploy/alerting.example.toml). Every error names the file and the
dotted path of the field at fault. With no file at all every alert goes to the built-in `log`
receiver, so a fresh deployment still leaves a trace of what it would have sent.
"""

from __future__ import annotations

import tomllib
from datetime import datetime, time
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    Tag,
    ValidationError,
    model_validator,
)

from alerting.weekly import Weekday
from events.base import Utility
from events.derived import AlertKind, Severity

ON_DUTY_LEAD = "on_duty_lead"
ON_DUTY_SUPERVISOR = "on_duty_supervisor"
ON_DUTY = (ON_DUTY_LEAD, ON_DUTY_SUPERVISOR)
LOG_RECEIVER = "log"

# The alert fields routes match on come from the event contract, so a typo in a route is a
# load error rather than a route that never matches.
Kind = AlertKind


class AlertingConfigError(ValueError):
    """The alerting file is missing, is not TOML, or has a field that is wrong."""


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"unknown time zone {name!r}") from error
    return name


def _aware(value: datetime) -> datetime:
    # A one-off silence without an offset would mean different instants on different hosts.
    if value.tzinfo is None:
        raise ValueError("needs a UTC offset, e.g. 2024-05-01T22:00:00+02:00")
    return value


TimeZoneName = Annotated[str, AfterValidator(_zone)]
AwareDatetime = Annotated[datetime, AfterValidator(_aware)]


def _as_list(value: Any) -> Any:
    # `utility = "heat"` and `utility = ["heat", "water"]` are both accepted; one shape inside
    # keeps validation errors to one line per bad value.
    return [value] if isinstance(value, str | int) else value


T = TypeVar("T")
OneOrMany = Annotated[list[T], BeforeValidator(_as_list), Field(min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Matchers(_Strict):
    """Equality matchers on alert fields; a list means any of; an absent field matches all."""

    utility: OneOrMany[Utility] | None = None
    area: OneOrMany[str] | None = None
    severity: OneOrMany[Severity] | None = None
    kind: OneOrMany[Kind] | None = None
    domain: OneOrMany[str] | None = None
    incident_id: OneOrMany[str] | None = None
    device_id: OneOrMany[str] | None = None
    # 0 first notice, 1 reminder to the lead, 2 escalated: route 2 to `on_duty_supervisor`.
    escalation: OneOrMany[Literal[0, 1, 2]] | None = None

    def allowed(self) -> dict[str, tuple[str, ...]]:
        """Field name -> accepted values (as text), for the fields this matcher constrains."""
        return {
            name: tuple(str(v) for v in values)
            for name, values in self.model_dump(exclude_none=True).items()
        }

    def is_empty(self) -> bool:
        return not self.allowed()


class WebhookReceiver(_Strict):
    url: Annotated[str, Field(pattern=r"^https?://")]
    secret: SecretStr = Field(description="Key of the HMAC-SHA256 body signature.")


class EmailReceiver(_Strict):
    to: Annotated[list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")]], Field(min_length=1)]


class Receiver(_Strict):
    """One named destination; it may use several channels at once."""

    webhook: WebhookReceiver | None = None
    email: EmailReceiver | None = None
    log: bool = False

    @model_validator(mode="after")
    def _has_a_channel(self) -> Receiver:
        if self.webhook is None and self.email is None and not self.log:
            raise ValueError("a receiver needs at least one of webhook, email, log = true")
        return self


class Shift(_Strict):
    """A shift that starts at `start` on each of `days` (local time); may run past midnight."""

    name: str
    days: Annotated[list[Weekday], Field(min_length=1)]
    start: time
    end: time
    lead: str
    supervisor: str


class Roster(_Strict):
    timezone: TimeZoneName = "UTC"
    shifts: list[Shift] = Field(default_factory=list)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


# Grouping bounds: a wait past an hour or an interval past a day would read as a lost page.
GroupWait = Annotated[float, Field(ge=0, le=3600)]
GroupInterval = Annotated[float, Field(gt=0, le=86400)]


class Route(_Strict):
    """A node of the routing tree; what a child leaves unset (receiver, grouping) it inherits."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    match: Matchers = Field(default_factory=Matchers)
    receiver: str | None = None
    continue_: bool = Field(default=False, alias="continue")
    group_wait_seconds: GroupWait | None = None
    group_interval_seconds: GroupInterval | None = None
    group_wait_max_seconds: GroupWait | None = None
    routes: list[Route] = Field(default_factory=list)


class OneOffSilence(_Strict):
    """Mutes matching alerts from `starts` until `ends`."""

    starts: AwareDatetime
    ends: AwareDatetime
    matchers: Matchers
    comment: str = Field(min_length=1)
    created_by: str = Field(min_length=1)

    @model_validator(mode="after")
    def _valid(self) -> OneOffSilence:
        if self.ends <= self.starts:
            raise ValueError("ends must be after starts")
        if self.matchers.is_empty():
            raise ValueError("matchers: a silence needs at least one matcher")
        return self

    def describe(self) -> str:
        return f"{self.comment} (by {self.created_by}, until {self.ends.isoformat()})"


class RecurringSilence(_Strict):
    """Mutes matching alerts every week on `weekdays` between `start` and `end` local time."""

    weekdays: Annotated[list[Weekday], Field(min_length=1)]
    start: time
    end: time
    timezone: TimeZoneName = "UTC"
    matchers: Matchers
    comment: str = Field(min_length=1)
    created_by: str = "config"

    @model_validator(mode="after")
    def _valid(self) -> RecurringSilence:
        if self.matchers.is_empty():
            raise ValueError("matchers: a silence needs at least one matcher")
        return self

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def describe(self) -> str:
        days = ",".join(self.weekdays)
        return f"{self.comment} (by {self.created_by}, every {days} {self.start}-{self.end})"


def _silence_tag(value: Any) -> str:
    # A recurring silence is told apart by its weekdays; that keeps errors about one shape only.
    if isinstance(value, dict):
        return "recurring" if "weekdays" in value else "one_off"
    return "recurring" if isinstance(value, RecurringSilence) else "one_off"


Silence = Annotated[
    Annotated[OneOffSilence, Tag("one_off")] | Annotated[RecurringSilence, Tag("recurring")],
    Discriminator(_silence_tag),
]


class Smtp(_Strict):
    host: str
    port: int = Field(default=587, ge=1, le=65535)
    sender: Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")]
    starttls: bool = True
    username: str | None = None
    password: SecretStr | None = None
    timeout_seconds: float = Field(default=10.0, gt=0)


class DeliveryConfig(_Strict):
    retries: int = Field(default=3, ge=0, le=20)
    backoff_initial_seconds: float = Field(default=1.0, ge=0)
    backoff_max_seconds: float = Field(default=60.0, ge=0)
    timeout_seconds: float = Field(default=10.0, gt=0)


def _default_receivers() -> dict[str, Receiver]:
    return {LOG_RECEIVER: Receiver(log=True)}


class AlertingConfig(_Strict):
    """Everything the dispatcher needs; `load()` with no path gives log-only defaults."""

    receivers: dict[str, Receiver] = Field(default_factory=_default_receivers)
    roster: Roster = Field(default_factory=Roster)
    route: Route = Field(default_factory=lambda: Route(receiver=LOG_RECEIVER))
    silences: list[Silence] = Field(default_factory=list)
    smtp: Smtp | None = None
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)
    public_url: Annotated[str, Field(pattern=r"^https?://")] | None = None
    # How long a new group collects alerts (incidents opened and merged in the meantime are
    # one notification), how long growth waits after a group's last notification, and how
    # long at most a new group waits while new incidents keep opening in its network; a route
    # may set its own (alerting/group.py).
    group_wait_seconds: GroupWait = 10.0
    group_interval_seconds: GroupInterval = 300.0
    group_wait_max_seconds: GroupWait = 60.0

    @model_validator(mode="before")
    @classmethod
    def _builtin_log_receiver(cls, data: Any) -> Any:
        # `log` is always there so the root route can default to it even in a file that
        # defines its own receivers.
        if isinstance(data, dict) and isinstance(data.get("receivers"), dict):
            receivers = dict(data["receivers"])
            receivers.setdefault(LOG_RECEIVER, {"log": True})
            return {**data, "receivers": receivers}
        return data

    @model_validator(mode="after")
    def _references_resolve(self) -> AlertingConfig:
        problems: list[str] = []
        if self.route.receiver is None:
            problems.append("route.receiver: the root route needs a receiver")
        elif self.route.receiver in ON_DUTY:
            # The root is the fallback when nobody is on duty, so it must be a real name.
            problems.append("route.receiver: the root route needs a named receiver, not on-duty")
        if not self.route.match.is_empty():
            problems.append("route.match: the root route matches every alert; drop `match`")
        for path, route in _walk(self.route, "route"):
            if route.receiver is None:
                continue
            if route.receiver in ON_DUTY:
                if not self.roster.shifts:
                    problems.append(f"{path}.receiver: {route.receiver} needs roster.shifts")
            elif route.receiver not in self.receivers:
                problems.append(f"{path}.receiver: {self._unknown(route.receiver)}")
        for index, shift in enumerate(self.roster.shifts):
            for role in ("lead", "supervisor"):
                name = getattr(shift, role)
                if name not in self.receivers:
                    problems.append(f"roster.shifts.{index}.{role}: {self._unknown(name)}")
        if self.smtp is None:
            for name, receiver in self.receivers.items():
                if receiver.email is not None:
                    problems.append(f"receivers.{name}.email: needs an [smtp] section")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _unknown(self, name: str) -> str:
        return f"unknown receiver {name!r} (known: {', '.join(sorted(self.receivers))})"

    @classmethod
    def load(cls, path: Path | str | None = None) -> AlertingConfig:
        """Read the TOML at `path`; None means the defaults (everything to the log)."""
        if path is None:
            return cls()
        source = Path(path)
        try:
            data = tomllib.loads(source.read_text(encoding="utf-8"))
        except FileNotFoundError as error:
            raise AlertingConfigError(f"{source}: no such alerting file") from error
        except tomllib.TOMLDecodeError as error:
            raise AlertingConfigError(f"{source}: not valid TOML: {error}") from error
        return cls.parse(data, source=str(source))

    @classmethod
    def parse(cls, data: dict[str, Any], source: str = "<alerting config>") -> AlertingConfig:
        """Validate decoded TOML; errors are prefixed with `source` and the field's path."""
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            raise AlertingConfigError(_explain(source, error)) from error


def _walk(route: Route, path: str) -> list[tuple[str, Route]]:
    found = [(path, route)]
    for index, child in enumerate(route.routes):
        found.extend(_walk(child, f"{path}.routes.{index}"))
    return found


def _explain(source: str, error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        # Drop the union tag pydantic inserts (`silences.0.one_off.ends`): it is not in the file.
        where = ".".join(str(part) for part in item["loc"] if part not in ("one_off", "recurring"))
        message = str(item["msg"]).removeprefix("Value error, ")
        for line in message.splitlines():
            lines.append(f"{source}: {where}: {line}" if where else f"{source}: {line}")
    return "\n".join(lines)
