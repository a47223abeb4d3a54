"""The connector's supervision: reconnect with backoff, lost/restored alerts, no replayed trips.

The source here is a scripted fake (pure code under test is the runner, not a protocol);
the protocols' own tests run against real servers in tests/integration/test_scada_*.py.
"""

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import pytest

from scada.config import SiteConfig
from scada.points import Mapper, PointConfig
from scada.runner import SourceRunner, StateFile, run_site
from scada.sources.base import Emit, PointUpdate, SourceConfig, SourceLost

T0 = datetime(2026, 1, 15, 8, 0, tzinfo=UTC)
POINT = PointConfig(point="1001", device="FDR-1", kind="breaker")


class ScriptedSource(SourceConfig):
    """Each connection emits the next script entry, then is lost; past the script it reads
    the point once more and stays up."""

    type: Literal["scripted"] = "scripted"
    script: tuple[tuple[int, ...], ...] = ()
    connections: int = 0

    async def run(self, emit: Emit) -> None:
        attempt = self.connections
        object.__setattr__(self, "connections", attempt + 1)  # frozen model: count anyway
        if attempt >= len(self.script):
            last = next((v for v in reversed(self.script) if v), (2,))
            await emit(PointUpdate("1001", last[-1], source_time=T0))
            await asyncio.sleep(3600)
        values = self.script[attempt]
        if not values:
            raise SourceLost("connection refused")
        for value in values:
            await emit(PointUpdate("1001", value, source_time=T0))
        raise SourceLost("connection reset")


def site_with(source: SourceConfig, state_file: Path | None = None) -> SiteConfig:
    return SiteConfig(site="north", sources=(source,), state_file=state_file)


async def run_for(seconds: float, source: SourceConfig, state: Path | None = None) -> list:
    published: list[tuple[str, dict]] = []

    async def publish(topic: str, key: bytes, value: bytes) -> None:
        published.append((topic, json.loads(value)))

    task = asyncio.create_task(run_site(site_with(source, state), publish))
    await asyncio.sleep(seconds)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return published


def source(**fields: object) -> ScriptedSource:
    defaults = {"name": "rtu-7", "points": (POINT,), "reconnect_initial": 0.05}
    return ScriptedSource.model_validate({**defaults, **fields})


def test_reconnect_reads_back_the_same_state_without_a_new_signal() -> None:
    """Three connections that each read the open breaker publish it once."""
    published = asyncio.run(run_for(0.6, source(script=((1,), (1,), (1,)), lost_after=5)))
    signals = [body for topic, body in published if topic == "scada"]
    assert [s["signal"] for s in signals] == ["breaker_open"]
    assert signals[0]["occurred_at"].startswith("2026-01-15T08:00:00")


def test_a_source_down_past_lost_after_raises_one_lost_alert_then_restored() -> None:
    """Refused connections past lost_after raise one lost alert; the first value, restored."""
    scripted = source(script=((), (), (), (), (2,)), lost_after=0.1, reconnect_max=0.1)
    published = asyncio.run(run_for(1.2, scripted))
    alerts = [body for topic, body in published if topic == "alerts"]
    assert [a["kind"] for a in alerts] == ["scada_source_lost", "scada_source_restored"]
    assert alerts[0]["incident_id"] == "scada-source:north:rtu-7"
    assert alerts[0]["severity"] == "warning" and "rtu-7" in alerts[0]["summary"]
    assert [b["signal"] for t, b in published if t == "scada"] == ["breaker_closed"]


def test_a_short_drop_raises_no_alert() -> None:
    """A source back before lost_after raises nothing: a blip is not a lost source."""
    published = asyncio.run(run_for(0.5, source(script=((2,), (2,)), lost_after=2.0)))
    assert [t for t, _ in published] == ["scada"]


def test_backoff_doubles_up_to_its_cap() -> None:
    """Refused connections are retried ever more slowly: few attempts in a short time."""
    scripted = source(script=((),) * 50, reconnect_initial=0.05, reconnect_max=0.4)
    asyncio.run(run_for(1.0, scripted))
    # 0.05 + 0.1 + 0.2 + 0.4 + 0.4 ... (with +-20 % jitter): about 5 tries in a second, not 20.
    assert 3 <= scripted.connections <= 7


def test_state_file_survives_a_connector_restart(tmp_path: Path) -> None:
    """After a restart with the state file, the breaker read back is not published again."""
    state = tmp_path / "state.json"
    first = asyncio.run(run_for(0.3, source(script=((1,),), lost_after=5), state))
    again = asyncio.run(run_for(0.3, source(script=((1,),), lost_after=5), state))
    assert [t for t, _ in first] == ["scada"] and again == []
    assert json.loads(state.read_text())["rtu-7"]["1001"]["signal"] == "breaker_open"


def test_a_failed_publish_is_not_taken_as_sent() -> None:
    """When publishing raises, the point's state is not recorded: the next read sends it."""

    async def scenario() -> list[str]:
        sent: list[str] = []
        fail = [True]

        async def publish(topic: str, key: bytes, value: bytes) -> None:
            if fail.pop() if fail else False:
                raise OSError("broker away")
            sent.append(json.loads(value)["signal"])

        scripted = source(script=((1,),), lost_after=5)
        runner = SourceRunner(
            site=site_with(scripted),
            source=scripted,
            mapper=Mapper("north", "rtu-7", (POINT,)),
            publish=publish,
            clock=lambda: T0 + timedelta(seconds=1),
        )
        update = PointUpdate("1001", 1, source_time=T0)
        with pytest.raises(OSError):
            await runner(update)
        await runner(update)
        return sent

    assert asyncio.run(scenario()) == ["breaker_open"]


def test_state_file_ignores_a_torn_file(tmp_path: Path) -> None:
    """An unreadable state file starts afresh instead of stopping the connector."""
    path = tmp_path / "state.json"
    path.write_text("{not json")
    mapper = StateFile(path).load(Mapper("north", "rtu-7", (POINT,)))
    assert mapper.states == {}


class QuietSource(SourceConfig):
    """Connects and says so, but its points never send a value (no retained state)."""

    type: Literal["quiet"] = "quiet"

    async def run(self, emit: Emit) -> None:
        await emit.connected()
        await asyncio.sleep(3600)


def test_a_connected_source_without_values_is_not_lost() -> None:
    """A source that reports its session up raises no lost alert, though no value came."""
    quiet = QuietSource(name="plant", points=(POINT,), lost_after=0.1)
    assert asyncio.run(run_for(0.5, quiet)) == []
