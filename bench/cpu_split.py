"""Where a worker's CPU went: a py-spy recording (`--format raw`, folded stacks) split into the
worker's jobs.

    py-spy record --pid PID --rate 100 --format raw -o FILE     (bench.storm_peer --profile)
    python -m bench.cpu_split FILE

py-spy leaves idle threads out, but not all of them: a thread-pool worker waiting for work or
the event loop in epoll is sometimes sampled, so stacks that end in a wait (`WAITING`) are
counted apart and left out of the shares. Each other stack goes to the first job in `JOBS`
whose every group of marks has a frame containing one of them (most specific first: a call
decoded inside the HTTP handler is "decode", not "HTTP"); a stack no job claims is "other".
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import print_table

# Leaves of a thread or loop that waits: sampled now and then, but not CPU work.
WAITING = (
    "EpollSelector.select (selectors.py",
    "_worker (concurrent/futures/thread.py",
    "Condition.wait (threading.py",
    "Event.wait (threading.py",
    "Queue.get (queue.py",
)
IDLE = "waiting (left out)"

HANDLER = ("accept (streams/http.py",)  # POST /v1/calls, /v1/scada, /v1/planned-works
PRODUCE = (
    "faust/topics.py",
    "faust/transport/producer.py",
    "ProducerBuffer",
    "Producer.send (faust/transport/drivers/aiokafka.py",
    "aiokafka/producer/",
    "publish_inbound (streams/app.py",
)
# (job, groups of marks): a job claims a stack when each group has a mark in one of its frames
# ("function (file:line)"). Most specific first.
JOBS: tuple[tuple[str, tuple[tuple[str, ...], ...]], ...] = (
    ("POST: decode and validation", (HANDLER, ("events/codec.py", "pydantic"))),
    ("POST: admission (times, id reuse)", (HANDLER, ("correlators/admission.py", "admitted ("))),
    ("POST: routing, address resolution", (HANDLER, ("correlators/routing.py", "topology/"))),
    ("produce: send, batch, ack (one record a request)", (PRODUCE,)),
    ("GET: the benchmark's polls (outages, calls)", (("get_outages (", "get_call_outcome ("),)),
    (
        "HTTP: auth, role check, rate limit",
        (("Api.identify (streams/web.py", "Api.authorize (streams/web.py", "access/"),),
    ),
    (
        "HTTP: parse, dispatch, middleware, respond",
        (
            (
                "aiohttp/web_",
                "aiohttp/http_",
                "aiohttp/base_protocol",
                "streams/web.py",
                "streams/http.py",
                "access/",
                "faust/web/",
            ),
        ),
    ),
    ("ingest agent: decode, route, forward", (("ingest (streams/app.py", "ingest_source"),)),
    ("correlate: save state (snapshot)", (("save_state (streams/app.py",),)),
    (
        "correlate: the correlator (correlators/)",
        (("correlate_one (streams/app.py",), ("correlators/",)),
    ),
    (
        "correlate agent: decode, encode, rest",
        (("correlate_one (streams/app.py", "correlate (streams/app.py", "correlators/"),),
    ),
    (
        "projection feed into chDB",
        (
            (
                "projections/sink.py",
                "projections/rows.py",
                "projections/chdb_store.py",
                "projections/backends",
                "chdb/",
                "projection_feed.py",
            ),
        ),
    ),
    ("alert delivery", (("alert_feed.py", "alerting/"),)),
    (
        "incident book, live pages",
        (
            (
                "follow_incident_stream",
                "projections/incidents.py",
                "streams/follow.py",
                "streams/pages.py",
            ),
        ),
    ),
    (
        "broker client: fetch, commit, responses",
        (("aiokafka/", "kafka/", "faust/transport/", "asyncio/streams.py"),),
    ),
    ("faust and mode machinery", (("faust/", "mode/"),)),
)


def stacks(path: Path) -> list[tuple[list[str], int]]:
    """(frames root first, samples) per line of py-spy's raw output."""
    found = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            found.append((stack.split(";"), int(count)))
    return found


def job_of(frames: Sequence[str]) -> str:
    if frames and any(frames[-1].startswith(leaf) for leaf in WAITING):
        return IDLE
    for job, groups in JOBS:
        if all(any(mark in frame for frame in frames for mark in marks) for marks in groups):
            return job
    return "other (event loop, timers)"


def split(path: Path) -> dict[str, Any]:
    """Samples per job, and each job's share of the samples that were not waits."""
    by_job: Counter[str] = Counter()
    for frames, count in stacks(path):
        by_job[job_of(frames)] += count
    waiting = by_job.pop(IDLE, 0)
    total = sum(by_job.values())
    return {
        "samples": total,
        "waiting_samples": waiting,
        "jobs": {
            job: {"samples": n, "share": n / total if total else 0.0}
            for job, n in by_job.most_common()
        },
    }


def print_split(figures: dict[str, Any], title: str) -> None:
    print_table(
        f"{title}: {figures['samples']:,} samples ({figures['waiting_samples']:,} of waits "
        "left out)",
        ["job", "samples", "share %"],
        [[job, j["samples"], 100 * j["share"]] for job, j in figures["jobs"].items()],
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("file", type=Path, help="py-spy record --format raw output")
    parser.add_argument("--other", type=int, default=0, help="print the N top unclaimed leaves")
    args = parser.parse_args(argv)
    figures = split(args.file)
    print_split(figures, f"where the CPU went ({args.file})")
    if args.other:
        leaves: Counter[str] = Counter()
        for frames, count in stacks(args.file):
            if job_of(frames).startswith("other"):
                leaves[" <- ".join(reversed(frames[-4:]))] += count
        for leaf, count in leaves.most_common(args.other):
            sys.stdout.write(f"{count:6d}  {leaf}\n")


if __name__ == "__main__":
    main()
