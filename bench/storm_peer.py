"""The peer: Debian's prometheus-alertmanager and this service on the same storm of calls,
with the same client, in one run; then steady loads against the service alone.

The storm network: one heat source, `--substations` heat substations, `--buildings` buildings
spread evenly under them, `--flats` flats each (500 x 20 under 25 by default). The burst is
one "no heat" call from every flat, in a seeded random order, one HTTP request per call, sent
by `--threads` client threads (keep-alive connections) as fast as each system answers.

    Alertmanager   POST /api/v2/alerts, one alert per call (labels alertname, building,
                   substation, premise: every call is an alert of its own), group_by
                   [building], group_wait 1s, one webhook receiver
    the service    POST /v1/calls (`outage run` against a fresh Tansu, its defaults but the
                   ingest and lookup limits raised; alerts routed to one webhook receiver)

Both webhooks go to a counting HTTP receiver in this process. Figures per system: posts/s
(calls over the time from the first request to the last answer), the time from the start of
the burst until every building is known (Alertmanager: the receiver has a notification of
every building's group; the service: `GET /v1/outages?building=` says `known_fault` for every
building, polled by one more thread, each building until it first does), and the
notifications sent. Ratios are the service's figure over Alertmanager's.

Steady load (the service only, a fresh broker and worker per rate): `--rates` calls/s for
`--seconds` each, paced by the same client (each call is due at its slot; a thread that is
late sends at once); every accepted call is polled at `GET /v1/calls/{id}` until it has an
outcome (two threads ask about the oldest 32 calls without one, each at most every 0.1 s).
Latency: from the POST being sent to the first poll that finds the outcome; a call without one
within `--drain` seconds counts as slower than that.

`--profile FILE` records the worker with py-spy (`pip install py-spy`) during the service's
burst and prints where its CPU went (`bench/cpu_split.py`). `--quick` is a storm of 48 calls
and one short steady rate, for the smoke test.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench.common import (
    DATE,
    STREET_KINDS,
    STREET_WORDS,
    cpu_seconds,
    percentile,
    print_table,
    worker,
    write_json,
)
from streams.broker import EmbeddedBroker, dies_with_this_process, free_port
from topology.importers.write import write_topology_csv
from topology.model import Node

HOST = "127.0.0.1"
POLL_EVERY = 0.1  # the least time between two polls of one call's outcome
POLL_WINDOW = 32  # only the oldest calls still without an outcome are polled
BUILDING_PASS_EVERY = 0.5  # the pause between two passes over the buildings not yet known


# ------------------------------------------------------------------------------ the network


@dataclass(frozen=True)
class Flat:
    premise: str
    building: str
    substation: str


def storm_network(buildings: int, flats: int, substations: int) -> tuple[list[Node], list[Flat]]:
    """One heat source, its substations, buildings spread evenly under them, flats below."""
    nodes = [Node(id="HS1", kind="heat_source", parent=None, utility="heat", address="1 Works")]
    subs = [f"HSUB-{s + 1:02d}" for s in range(substations)]
    nodes += [Node(id=s, kind="heat_substation", parent="HS1", utility="heat") for s in subs]
    everyone: list[Flat] = []
    for b in range(buildings):
        s = b * substations // buildings
        street = (
            f"{STREET_WORDS[s % len(STREET_WORDS)]} "
            f"{STREET_KINDS[s // len(STREET_WORDS) % len(STREET_KINDS)]} {s + 1}"
        )
        building = f"B-{b + 1:04d}"
        address = f"{2 + 2 * b} {street}"
        nodes.append(
            Node(id=building, kind="building", parent=subs[s], utility="heat", address=address)
        )
        for f in range(flats):
            premise = f"{building}-F{f + 1:02d}"
            nodes.append(
                Node(
                    id=premise,
                    kind="premise",
                    parent=building,
                    utility="heat",
                    customers=1,
                    address=f"{address}, flat {f + 1}",
                )
            )
            everyone.append(Flat(premise, building, subs[s]))
    return nodes, everyone


# ------------------------------------------------------------------------------- the client


@dataclass(frozen=True)
class Request:
    path: str
    body: bytes
    call_id: str


@dataclass
class Sent:
    status: int
    started: float  # time.monotonic()
    ended: float


class Client:
    """`threads` threads, one keep-alive connection each, one request per call."""

    def __init__(self, port: int, headers: dict[str, str], threads: int) -> None:
        self.port = port
        self.headers = {"content-type": "application/json", **headers}
        self.threads = threads

    def send(
        self,
        requests: Sequence[Request],
        *,
        rate: float | None = None,
        on_accepted: Any = None,
    ) -> tuple[float, list[Sent | None]]:
        """Send every request (paced at `rate`/s from now, else as fast as answered); returns
        the start time and what each got. `on_accepted(request, sent)` runs for each 2xx."""
        results: list[Sent | None] = [None] * len(requests)
        claim = itertools.count()  # next() on a count is atomic under the GIL
        start = time.monotonic()

        def run() -> None:
            connection = http.client.HTTPConnection(HOST, self.port, timeout=60)
            while (n := next(claim)) < len(requests):
                if rate is not None:
                    delay = start + n / rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                request = requests[n]
                began = time.monotonic()
                try:
                    connection.request("POST", request.path, request.body, self.headers)
                    response = connection.getresponse()
                    response.read()
                    status = response.status
                except (OSError, http.client.HTTPException):
                    status = 0
                    connection.close()
                    connection = http.client.HTTPConnection(HOST, self.port, timeout=60)
                sent = Sent(status, began, time.monotonic())
                results[n] = sent
                if on_accepted is not None and 200 <= status < 300:
                    on_accepted(request, sent)
            connection.close()

        workers = [threading.Thread(target=run, daemon=True) for _ in range(self.threads)]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join()
        return start, results


def get_json(connection: http.client.HTTPConnection, path: str, headers: dict[str, str]) -> Any:
    """(status, body) of a GET on a keep-alive connection."""
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    body = response.read()
    return response.status, (json.loads(body) if body else None)


def ingest_figures(start: float, sent: Sequence[Sent | None]) -> dict[str, Any]:
    done = [s for s in sent if s is not None]
    ended = max((s.ended for s in done), default=start)
    statuses = Counter(s.status for s in done)
    return {
        "calls": len(sent),
        "posts_per_s": len(done) / (ended - start) if ended > start else 0.0,
        "ingest_s": ended - start,
        "accepted": sum(n for status, n in statuses.items() if 200 <= status < 300),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
    }


# ----------------------------------------------------------------------------- the receiver


@dataclass
class Received:
    at: float
    body: dict[str, Any]


@dataclass
class Receiver:
    """Counts the webhooks posted to it, by path (`/alertmanager`, `/service`)."""

    got: dict[str, list[Received]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def notes(self, path: str) -> list[Received]:
        with self.lock:
            return list(self.got.get(path, []))


@contextlib.contextmanager
def receiving() -> Iterator[tuple[Receiver, int]]:
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            at = time.monotonic()
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = {}
            with receiver.lock:
                receiver.got.setdefault(self.path, []).append(Received(at, parsed))
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per webhook would drown the figures

    server = ThreadingHTTPServer((HOST, 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver, int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def wait_quiet(
    receiver: Receiver, path: str, quiet: float, longest: float, at_least: float = 0.0
) -> None:
    """At least `at_least` seconds, then until no webhook has come to `path` for `quiet`
    seconds; `longest` in all."""
    began = time.monotonic()
    while time.monotonic() < began + longest:
        notes = receiver.notes(path)
        last = max(notes[-1].at if notes else 0.0, began)
        now = time.monotonic()
        if now >= began + at_least and now - last >= quiet:
            return
        time.sleep(0.2)


# -------------------------------------------------------------------------- Alertmanager


def alertmanager_binary(given: str | None) -> str:
    found = given or shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if not found:
        raise SystemExit(
            "prometheus-alertmanager not found: `make bench` installs it (Debian package "
            "prometheus-alertmanager), or pass --alertmanager PATH"
        )
    return found


@contextlib.contextmanager
def alertmanager(
    binary: str, folder: Path, hook: str
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """Alertmanager on loopback, no cluster, one webhook receiver grouping by building."""
    port = free_port()
    config = folder / "alertmanager.yml"
    config.write_text(
        "route:\n"
        "  receiver: counter\n"
        "  group_by: [building]\n"
        "  group_wait: 1s\n"
        "  group_interval: 5m\n"
        "  repeat_interval: 4h\n"
        "receivers:\n"
        "  - name: counter\n"
        "    webhook_configs:\n"
        f"      - url: {hook}\n"
        "        send_resolved: false\n"
    )
    log = (folder / "alertmanager.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.path={folder / 'am-data'}",
            f"--web.listen-address={HOST}:{port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=dies_with_this_process(),
    )
    log.close()
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                tail = (folder / "alertmanager.log").read_text(errors="replace")[-2000:]
                raise SystemExit(f"alertmanager exited with {process.returncode}:\n{tail}")
            try:
                connection = http.client.HTTPConnection(HOST, port, timeout=2)
                if get_json_status(connection, "/-/ready") == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("alertmanager did not become ready in 30 s")
            time.sleep(0.2)
        yield process, port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def get_json_status(connection: http.client.HTTPConnection, path: str) -> int:
    connection.request("GET", path)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response.status


def alertmanager_burst(
    args: argparse.Namespace, flats: Sequence[Flat], receiver: Receiver, hook_port: int
) -> dict[str, Any]:
    buildings = {f.building for f in flats}
    with tempfile.TemporaryDirectory() as folder:
        binary = alertmanager_binary(args.alertmanager)
        hook = f"http://{HOST}:{hook_port}/alertmanager"
        with alertmanager(binary, Path(folder), hook) as (process, port):
            now = datetime.now(UTC).isoformat()
            requests = [
                Request(
                    "/api/v2/alerts",
                    json.dumps(
                        [
                            {
                                "labels": {
                                    "alertname": "NoHeat",
                                    "building": f.building,
                                    "substation": f.substation,
                                    "premise": f.premise,
                                },
                                "annotations": {"summary": "no heat"},
                                "startsAt": now,
                            }
                        ]
                    ).encode(),
                    f.premise,
                )
                for f in flats
            ]
            cpu_before = cpu_seconds(process.pid)
            start, sent = Client(port, {}, args.threads).send(requests)
            figures = ingest_figures(start, sent)
            deadline = start + args.known_timeout
            known: dict[str, float] = {}
            while time.monotonic() < deadline:
                for note in receiver.notes("/alertmanager"):
                    building = note.body.get("groupLabels", {}).get("building")
                    if building in buildings:
                        known.setdefault(building, note.at)
                if len(known) == len(buildings):
                    break
                time.sleep(0.05)
            wait_quiet(receiver, "/alertmanager", 3.0, 30.0)
            cpu = cpu_seconds(process.pid) - cpu_before
    notes = receiver.notes("/alertmanager")
    figures["first_notification_s"] = notes[0].at - start if notes else None
    figures["last_notification_s"] = notes[-1].at - start if notes else None
    return {
        **figures,
        "buildings": len(buildings),
        "buildings_known": len(known),
        "all_known_s": max(known.values()) - start if len(known) == len(buildings) else None,
        "notifications": len(notes),
        "alerts_in_notifications": sum(len(n.body.get("alerts", [])) for n in notes),
        "cpu_s": {"alertmanager": cpu},
    }


# ------------------------------------------------------------------------------ the service


def call_body(flat: Flat, call_id: str, at: str) -> bytes:
    return json.dumps(
        {
            "type": "call_reported",
            "schema_version": 1,
            "event_id": call_id,
            "occurred_at": at,
            "utility": "heat",
            "premise_id": flat.premise,
            "symptom": "no_heat",
        }
    ).encode()


def service_env(folder: Path, hook_port: int) -> dict[str, str]:
    """`make run` defaults but for the limits (a load test is one key) and where alerts go."""
    alerting = folder / "alerting.toml"
    alerting.write_text(
        'public_url = "http://127.0.0.1"\n'
        "[receivers.lead]\n"
        f'webhook = {{ url = "http://{HOST}:{hook_port}/service", secret = "bench" }}\n'
        "[route]\n"
        'receiver = "lead"\n'
    )
    return {
        "OUTAGE_ALERTING": str(alerting),
        "OUTAGE_INGEST_RATE": "1000000",
        "OUTAGE_INGEST_BURST": "1000000",
        "OUTAGE_LOOKUP_RATE": "1000000",
        "OUTAGE_LOOKUP_BURST": "1000000",
        "OUTAGE_TICK_SECONDS": "2",  # the default (bench.common sets an hour for past storms)
    }


@contextlib.contextmanager
def service(
    folder: Path, network_csv: Path, hook_port: int
) -> Iterator[tuple[Any, EmbeddedBroker]]:
    """A fresh Tansu (memory) and `outage run` against it."""
    workdir = Path(tempfile.mkdtemp(dir=folder))
    with (
        EmbeddedBroker() as broker,
        worker(broker.bootstrap, workdir, [network_csv], **service_env(workdir, hook_port)) as w,
    ):
        yield w, broker


@contextlib.contextmanager
def profiling(pid: int, out: Path | None, gil: bool = False) -> Iterator[None]:
    """py-spy on `pid` for the duration of the block (nothing when `out` is None); `gil`:
    only the thread holding the GIL (the interpreter's time, not chDB's native work)."""
    if out is None:
        yield
        return
    spy = shutil.which(
        "py-spy", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    )
    if spy is None:
        raise SystemExit("--profile needs py-spy: pip install py-spy")
    out.parent.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [spy, "record", "--pid", str(pid), "--rate", "100", "--format", "raw", "-o", str(out)]
        + ["--nonblocking"]  # pausing the worker for each sample cut its posts/s to a third
        + (["--gil"] if gil else []),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        process.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def service_burst(
    args: argparse.Namespace,
    flats: Sequence[Flat],
    receiver: Receiver,
    hook_port: int,
    folder: Path,
    network_csv: Path,
) -> dict[str, Any]:
    buildings = sorted({f.building for f in flats})
    with service(folder, network_csv, hook_port) as (running, broker):
        port = int(running.base.rsplit(":", 1)[1])
        now = datetime.now(UTC).isoformat()
        requests = [
            Request("/v1/calls", call_body(f, f"storm-{n}", now), f"storm-{n}")
            for n, f in enumerate(flats)
        ]
        known: dict[str, float] = {}
        stop = threading.Event()
        polls = [0]

        def poll() -> None:
            """Each building until the service first says known_fault for it."""
            connection = http.client.HTTPConnection(HOST, port, timeout=30)
            while not stop.is_set() and len(known) < len(buildings):
                for building in buildings:
                    if building in known or stop.is_set():
                        continue
                    try:
                        status, body = get_json(
                            connection, f"/v1/outages?building={building}", running.headers
                        )
                    except (OSError, http.client.HTTPException):
                        connection.close()
                        connection = http.client.HTTPConnection(HOST, port, timeout=30)
                        continue
                    polls[0] += 1
                    if status == 200 and body["status"] == "known_fault":
                        known[building] = time.monotonic()
                stop.wait(BUILDING_PASS_EVERY)
            connection.close()

        pids = {"worker": running.process.pid, "broker": broker.pid, "bench": os.getpid()}
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        poller = threading.Thread(target=poll, daemon=True)
        with profiling(running.process.pid, args.profile, args.profile_gil):
            poller.start()
            start, sent = Client(port, running.headers, args.threads).send(requests)
            figures = ingest_figures(start, sent)
            poller.join(timeout=max(0.0, start + args.known_timeout - time.monotonic()))
            stop.set()
            poller.join()
        cpu_burst = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
        # Notifications wait in their group (the route's group_wait, 10 s by default) first.
        wait_quiet(receiver, "/service", args.quiet, args.notify_timeout, args.notify_wait)
    notes = receiver.notes("/service")
    figures["first_notification_s"] = notes[0].at - start if notes else None
    figures["last_notification_s"] = notes[-1].at - start if notes else None
    kinds = Counter(str(n.body.get("alert", {}).get("kind")) for n in notes)
    return {
        **figures,
        "buildings": len(buildings),
        "buildings_known": len(known),
        "all_known_s": max(known.values()) - start if len(known) == len(buildings) else None,
        "notifications": len(notes),
        "notifications_by_kind": dict(sorted(kinds.items())),
        "incidents_notified": len({n.body.get("alert", {}).get("incident_id") for n in notes}),
        "lookups": polls[0],
        "cpu_s": cpu_burst,  # from the burst's start until every building was known
    }


@dataclass
class Pending:
    call_id: str
    posted: float
    polled: float = 0.0
    busy: bool = False  # a poller is asking about it
    done: bool = False  # answered, or given up on


class Outstanding:
    """Accepted calls without an outcome, oldest first. Pollers ask about the oldest `window`
    of them, each at most every POLL_EVERY seconds: the worker answers a domain's calls in
    the order they reached the broker, so the oldest are the ones worth asking about, and the
    polls stay a bounded load on the worker however long the backlog grows."""

    def __init__(self, window: int) -> None:
        self.items: deque[Pending] = deque()
        self.window = window
        self.lock = threading.Lock()

    def add(self, call_id: str, posted: float) -> None:
        with self.lock:
            self.items.append(Pending(call_id, posted))

    def next_due(self, now: float, drain: float) -> Pending | None:
        with self.lock:
            self._trim()
            live = 0
            for item in self.items:
                if item.done:
                    continue
                if now - item.posted > drain:
                    item.done = True  # no outcome within the wait: counted as slower
                    continue
                live += 1
                if not item.busy and now - item.polled >= POLL_EVERY:
                    item.busy = True
                    return item
                if live >= self.window:
                    break
            return None

    def polled(self, item: Pending, now: float, *, found: bool, into: dict[str, float]) -> None:
        with self.lock:
            item.busy, item.polled = False, now
            if found:
                item.done = True
                into[item.call_id] = now

    def empty(self) -> bool:
        with self.lock:
            self._trim()
            return not self.items

    def _trim(self) -> None:
        while self.items and self.items[0].done:
            self.items.popleft()


def steady(
    args: argparse.Namespace,
    flats: Sequence[Flat],
    rate: float,
    receiver: Receiver,
    hook_port: int,
    folder: Path,
    network_csv: Path,
) -> dict[str, Any]:
    """`rate` calls/s for `args.seconds` against a fresh service; each call polled until it
    has an outcome."""
    count = max(1, round(rate * args.seconds))
    chosen = [flats[n % len(flats)] for n in range(count)]
    with service(folder, network_csv, hook_port) as (running, broker):
        port = int(running.base.rsplit(":", 1)[1])
        now = datetime.now(UTC).isoformat()
        tag = f"steady{rate:g}"
        requests = [
            Request("/v1/calls", call_body(f, f"{tag}-{n}", now), f"{tag}-{n}")
            for n, f in enumerate(chosen)
        ]
        outstanding = Outstanding(POLL_WINDOW)
        answered: dict[str, float] = {}
        posted: dict[str, float] = {}
        polls = [0]
        sending = threading.Event()
        sending.set()
        pids = {"worker": running.process.pid, "broker": broker.pid, "bench": os.getpid()}
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}

        def accepted(request: Request, sent: Sent) -> None:
            posted[request.call_id] = sent.started
            outstanding.add(request.call_id, sent.started)

        def poll() -> None:
            connection = http.client.HTTPConnection(HOST, port, timeout=30)
            while True:
                item = outstanding.next_due(time.monotonic(), args.drain)
                if item is None:
                    if not sending.is_set() and outstanding.empty():
                        break
                    time.sleep(0.005)
                    continue
                try:
                    status, _ = get_json(connection, f"/v1/calls/{item.call_id}", running.headers)
                except (OSError, http.client.HTTPException):
                    connection.close()
                    connection = http.client.HTTPConnection(HOST, port, timeout=30)
                    status = 0
                polls[0] += 1
                outstanding.polled(item, time.monotonic(), found=status == 200, into=answered)
            connection.close()

        pollers = [threading.Thread(target=poll, daemon=True) for _ in range(2)]
        for thread in pollers:
            thread.start()
        start, sent = Client(port, running.headers, args.threads).send(
            requests, rate=rate, on_accepted=accepted
        )
        sending.clear()
        for thread in pollers:
            thread.join()
        waited = time.monotonic() - start
        cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
    figures = ingest_figures(start, sent)
    latencies = [
        answered[c] - at if c in answered and answered[c] - at <= args.drain else math.inf
        for c, at in posted.items()
    ]
    within = sum(1 for x in latencies if not math.isinf(x))
    return {
        "rate_asked": rate,
        "seconds": args.seconds,
        **figures,
        "answered_within_drain": within,
        "drain_s": args.drain,
        "latency_p50_s": finite(percentile(latencies, 50)),
        "latency_p99_s": finite(percentile(latencies, 99)),
        "latency_max_s": finite(max(latencies, default=math.nan)),
        "waited_s": waited,
        "polls": polls[0],
        "cpu_s": cpu,
    }


def finite(value: float) -> float | None:
    """None for "no outcome within the wait" (JSON has no infinity)."""
    return None if math.isinf(value) or math.isnan(value) else value


# ------------------------------------------------------------------------------------ main


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--buildings", type=int, default=500)
    parser.add_argument("--flats", type=int, default=20, help="flats per building")
    parser.add_argument("--substations", type=int, default=25)
    parser.add_argument("--threads", type=int, default=8, help="client threads")
    parser.add_argument("--rates", default="20,100,500", help="steady calls/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=20, help="of each steady rate")
    parser.add_argument("--drain", type=float, default=60, help="longest wait for an outcome, s")
    parser.add_argument(
        "--known-timeout", type=float, default=240, help="longest wait for every building, s"
    )
    parser.add_argument(
        "--quiet", type=float, default=10, help="the service's notifications are over after this"
    )
    parser.add_argument(
        "--notify-wait", type=float, default=30, help="least wait for them after the burst, s"
    )
    parser.add_argument("--notify-timeout", type=float, default=120, help="longest wait for them")
    parser.add_argument("--seed", type=int, default=16, help="of the order the flats call in")
    parser.add_argument("--alertmanager", help="the binary (default: prometheus-alertmanager)")
    parser.add_argument("--profile", type=Path, help="py-spy the worker's burst into this file")
    parser.add_argument(
        "--profile-gil", action="store_true", help="py-spy --gil: the GIL holder's samples only"
    )
    parser.add_argument("--quick", action="store_true", help="a 48-call storm, one short rate")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.quick:
        args.buildings, args.flats, args.substations = 12, 4, 3
        args.rates, args.seconds, args.drain = "10", 2.0, 30.0
        args.known_timeout, args.quiet, args.notify_timeout = 60.0, 3.0, 40.0
        args.notify_wait = 12.0

    nodes, flats = storm_network(args.buildings, args.flats, args.substations)
    random.Random(args.seed).shuffle(flats)
    rates = [float(r) for r in args.rates.split(",") if r]
    print(
        f"storm: {len(flats):,} calls from the flats of {args.buildings:,} buildings under "
        f"{args.substations} substations of one heat source; {args.threads} client threads"
    )
    figures: dict[str, Any] = {
        "date": datetime.now(UTC).date().isoformat(),
        "bench_date": DATE,
        "buildings": args.buildings,
        "flats": args.flats,
        "substations": args.substations,
        "calls": len(flats),
        "threads": args.threads,
    }
    with tempfile.TemporaryDirectory() as tmp, receiving() as (receiver, hook_port):
        folder = Path(tmp)
        network_csv = folder / "storm.csv"
        write_topology_csv(nodes, network_csv)
        peer = alertmanager_burst(args, flats, receiver, hook_port)
        ours = service_burst(args, flats, receiver, hook_port, folder, network_csv)
        runs = [
            steady(args, flats, rate, receiver, hook_port, folder, network_csv) for rate in rates
        ]
    figures["alertmanager"], figures["service"], figures["steady"] = peer, ours, runs
    figures["ratios"] = {
        "posts_per_s": ratio(ours["posts_per_s"], peer["posts_per_s"]),
        "all_known_s": ratio(ours["all_known_s"], peer["all_known_s"]),
        "notifications": ratio(ours["notifications"], peer["notifications"]),
    }

    def shown(value: float | None, limit: float) -> Any:
        return f"> {limit:.0f}" if value is None else value

    print_table(
        f"the same burst, the same client ({figures['date']}; ratio: the service / Alertmanager)",
        [
            "system",
            "calls",
            "accepted",
            "posts/s",
            "every building known s",
            "known",
            "notifications",
        ],
        [
            [
                name,
                r["calls"],
                r["accepted"],
                r["posts_per_s"],
                shown(r["all_known_s"], args.known_timeout),
                f"{r['buildings_known']:,} / {r['buildings']:,}",
                r["notifications"],
            ]
            for name, r in (("Alertmanager", peer), ("outage-correlator", ours))
        ]
        + [
            [
                "ratio",
                None,
                None,
                figures["ratios"]["posts_per_s"],
                figures["ratios"]["all_known_s"],
                None,
                figures["ratios"]["notifications"],
            ]
        ],
    )
    print(f"service notifications by kind: {ours['notifications_by_kind']}")
    print(
        "CPU s during the burst: Alertmanager {:.1f}; service worker {:.1f}, broker {:.1f}, "
        "bench {:.1f}".format(
            peer["cpu_s"]["alertmanager"],
            ours["cpu_s"]["worker"],
            ours["cpu_s"]["broker"],
            ours["cpu_s"]["bench"],
        )
    )
    if runs:
        print_table(
            f"steady load on the service (latency: POST sent to the first poll finding the "
            f"outcome; none within {args.drain:.0f} s counts as slower)",
            [
                "calls/s",
                "calls",
                "accepted",
                "posted/s",
                f"outcome in {args.drain:.0f} s",
                "p50 s",
                "p99 s",
                "max s",
                "CPU s worker",
                "broker",
            ],
            [
                [
                    f"{r['rate_asked']:g}",
                    r["calls"],
                    r["accepted"],
                    r["posts_per_s"],
                    r["answered_within_drain"],
                    shown(r["latency_p50_s"], args.drain),
                    shown(r["latency_p99_s"], args.drain),
                    shown(r["latency_max_s"], args.drain),
                    r["cpu_s"]["worker"],
                    r["cpu_s"]["broker"],
                ]
                for r in runs
            ],
        )
    if args.profile is not None:
        from bench.cpu_split import print_split, split

        shares = split(args.profile)
        figures["profile"] = {"file": str(args.profile), **shares}
        print_split(shares, f"where the worker's CPU went during the burst ({args.profile})")
    write_json(args.json, figures)


if __name__ == "__main__":
    main()
