"""The HTTP edge's own limits: lanes for slow work, declared query limits, lookup rate limits,
answers to requests aiohttp cannot parse, and public operations that ignore credentials."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import http_exceptions, web
from aiohttp.test_utils import make_mocked_request

from access.store import AccessStore
from correlators.correlator import Correlator
from correlators.rules import CorrelationRules
from projections.incidents import IncidentBook
from streams import http
from streams.settings import Settings
from streams.web import Api, Call, Lane, Operation, Param, Rejected, check_query, malformed
from topology.load import load_topologies
from topology.model import Topology
from topology.phones import load_phone_book
from topology.samples import HEAT_CSV, PHONES_CSV

ADDRESS = "10 Birch Street, flat 1"  # a premise of the heat sample


def test_a_lane_runs_its_work_off_the_event_loop() -> None:
    """Work in a lane runs on one of the lane's threads, never on the loop's."""

    async def main() -> tuple[int, int]:
        return threading.get_ident(), await Lane("x", threads=1, waiting=0).run(threading.get_ident)

    loop_thread, work_thread = asyncio.run(main())
    assert work_thread != loop_thread


def test_a_full_lane_answers_503_at_once_without_running_the_work() -> None:
    """Past threads + waiting a request gets 503 with Retry-After and its work never runs."""
    gate, ran = threading.Event(), []

    async def main() -> None:
        lane = Lane("password checks", threads=1, waiting=1)
        busy = asyncio.ensure_future(lane.run(lambda: gate.wait(10)))
        queued = asyncio.ensure_future(lane.run(lambda: ran.append("queued")))
        while lane.pending < 2:  # both have taken their slot
            await asyncio.sleep(0)
        with pytest.raises(Rejected) as refused:
            await lane.run(lambda: ran.append("refused"))
        assert refused.value.status == 503 and refused.value.headers["Retry-After"] == "1"
        assert "too many password checks" in refused.value.reason
        gate.set()
        await busy
        await queued
        assert lane.pending == 0

    asyncio.run(main())
    assert ran == ["queued"]


@pytest.mark.parametrize(
    ("schema", "value", "error"),
    [
        ({"type": "string", "maxLength": 3}, "abc", None),
        ({"type": "string", "maxLength": 3}, "abcd", "q has 4 characters; at most 3"),
        ({"type": "string", "enum": ["heat", "power"]}, "power", None),
        ({"type": "string", "enum": ["heat", "power"]}, "gas", "q must be heat or power"),
        ({"type": "string", "enum": ["a", "b", "c"]}, "d", "q must be a, b or c"),
        ({"type": "string", "enum": ["heat", "power"]}, "", "q must be heat or power"),
        ({"type": "string"}, "x" * 10_000, None),  # no declared limit: none applies
    ],
)
def test_query_limits_the_operation_declares_are_enforced(
    schema: dict[str, Any], value: str, error: str | None
) -> None:
    """maxLength and enum of a query parameter give a 400 saying which and why."""
    param = Param("q", "text", schema=schema)
    if error is None:
        check_query(param, value)
        return
    with pytest.raises(Rejected) as refused:
        check_query(param, value)
    assert (refused.value.status, refused.value.reason) == (400, error)


PHONE_IN_INPUT = "+1 555 123 4567"


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (http_exceptions.LineTooLong(f"b'/?q={PHONE_IN_INPUT}'", 8190), "over 8190 bytes"),
        (
            http_exceptions.BadHttpMessage(f"Invalid header token:\n\n  b'X: {PHONE_IN_INPUT}'"),
            "Invalid header token",
        ),
        (http_exceptions.BadStatusLine(f"GET /{PHONE_IN_INPUT}"), "Bad status line"),
        (http_exceptions.InvalidHeader(PHONE_IN_INPUT.encode()), "Invalid HTTP header"),
        (http_exceptions.InvalidURLError(f"/{PHONE_IN_INPUT}"), "a URL that cannot be read"),
    ],
)
def test_a_malformed_request_is_named_without_echoing_it(error: Exception, reason: str) -> None:
    """The reason says what was wrong with the request and quotes none of it."""
    said = malformed(error, 8190)
    assert said.startswith("malformed HTTP request: ") and reason in said
    assert "555" not in said


@pytest.fixture
def topology() -> Topology:
    """The heat sample network."""
    return load_topologies([HEAT_CSV])


def edge(tmp_path: Path, topology: Topology, **settings: Any) -> tuple[Api, str]:
    """The lookup operations of streams/http.py on a fake service, and an agent's key."""
    service = SimpleNamespace(
        correlator=Correlator(topology, CorrelationRules.load(None), reporter_key=b"k"),
        settings=Settings(data_dir=tmp_path, **settings),
        book=IncidentBook(),
        phone_book=load_phone_book([PHONES_CSV], topology),
    )
    store = AccessStore(tmp_path / "access.sqlite3")
    api = Api(
        store,
        session_lifetime=timedelta(hours=1),
        cookie_secure=False,
        ingest_rate=1000.0,
        ingest_burst=1000,
    )
    http.register(service, api)  # type: ignore[arg-type]  # a fake with what lookups use
    return api, store.create_key("crm", frozenset({"agent"}))[1]


def operation(api: Api, method: str, path: str) -> Operation:
    return next(o for o in api.operations if (o.method, o.path) == (method, path))


async def ask(api: Api, method: str, path_qs: str, headers: dict[str, str]) -> web.Response:
    request = make_mocked_request(method, path_qs, headers=headers)
    response = await api.run(operation(api, method, request.path), request, {})
    assert isinstance(response, web.Response)
    return response


def test_address_lookups_run_off_the_event_loop(
    tmp_path: Path, topology: Topology, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fuzzy address matching (tens of ms on a large network) runs on a thread, not the loop."""
    api, key = edge(tmp_path, topology)
    matched_on: list[int] = []
    resolve, suggest = topology.resolve, topology.suggest

    def resolve_spy(**hints: Any) -> Any:
        matched_on.append(threading.get_ident())
        return resolve(**hints)

    def suggest_spy(text: str, limit: int = 5, utility: str | None = None) -> Any:
        matched_on.append(threading.get_ident())
        return suggest(text, limit, utility)

    monkeypatch.setattr(topology, "resolve", resolve_spy)
    monkeypatch.setattr(topology, "suggest", suggest_spy)
    auth = {"Authorization": f"Bearer {key}"}

    async def main() -> int:
        found = await ask(api, "GET", f"/v1/outages?address={ADDRESS}", auth)
        assert found.status == 200, found.text
        typed = await ask(api, "GET", "/v1/suggest?q=Birch", auth)
        assert typed.status == 200, typed.text
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert len(matched_on) == 2 and loop_thread not in matched_on


def test_lookup_text_over_200_characters_is_refused_with_the_reason(
    tmp_path: Path, topology: Topology
) -> None:
    """q= and address= over 200 characters: 400 naming the parameter and the cap."""
    api, key = edge(tmp_path, topology)
    auth = {"Authorization": f"Bearer {key}"}

    async def main() -> list[tuple[int, str]]:
        answers = []
        for query in ("q=" + "x" * 201, "address=" + "Birch Street " * 600, "utility=gas"):
            response = await ask(api, "GET", f"/v1/outages?{query}", auth)
            answers.append((response.status, response.text or ""))
        return answers

    (q, address, utility) = asyncio.run(main())
    assert q[0] == 400 and "q has 201 characters; at most 200" in q[1]
    assert address[0] == 400 and "address has 7800 characters; at most 200" in address[1]
    assert utility[0] == 400 and "utility must be heat, power" in utility[1]


def test_lookups_have_a_rate_limit_of_their_own(tmp_path: Path, topology: Topology) -> None:
    """Past the lookup burst a key gets 429 with Retry-After; its ingest budget is untouched."""
    api, key = edge(tmp_path, topology, lookup_rate=0.01, lookup_burst=2)
    auth = {"Authorization": f"Bearer {key}"}

    async def main() -> list[web.Response]:
        paths = ["/v1/outages?premise=P-HSUB1-B1-01", "/v1/suggest?q=Birch"] * 2
        return [await ask(api, "GET", path, auth) for path in paths]

    answers = asyncio.run(main())
    assert [a.status for a in answers] == [200, 200, 429, 429]  # one budget for both
    assert int(answers[2].headers["Retry-After"]) >= 1
    assert "rate limit: 0.01 requests/s" in (answers[2].text or "")
    assert api.buckets.wait("key:crm", 0.0) == 0.0  # the ingest buckets never saw them


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Basic YWRtaW46YWRtaW4="},
        {"Authorization": "Bearer nonsense"},
        {"X-API-Key": "ock_00000000_revoked"},
    ],
)
def test_public_operations_ignore_credentials_they_do_not_need(
    tmp_path: Path, headers: dict[str, str]
) -> None:
    """A wrong Authorization or X-API-Key on a public operation is not read, so no 401."""
    api = Api(
        AccessStore(tmp_path / "access.sqlite3"),
        session_lifetime=timedelta(hours=1),
        cookie_secure=False,
        ingest_rate=1.0,
        ingest_burst=1,
    )
    seen: list[Call] = []

    async def public(call: Call) -> web.Response:
        seen.append(call)
        return web.json_response({"ok": True})

    api.op("GET", "/public", "public", "a public operation")(public)

    async def main() -> web.Response:
        return await ask(api, "GET", "/public", headers)

    assert asyncio.run(main()).status == 200
    assert seen[0].principal is None
