"""Conditional writes and exact end offsets in front of s3rver, for Tansu's s3:// storage.

Tansu keeps each partition's offsets in S3 objects it updates read-modify-write, guarded by
conditional PUTs (`If-Match: <etag>`, `If-None-Match: *`). s3rver ignores those headers: two
produces at once then overwrite each other's update, and acknowledged records vanish
(measured here: 400 records produced over 4 partitions, 314 left). This gate passes every
request through to s3rver and makes each conditional PUT atomic: under one lock it compares
the object's current ETag (a HEAD) with the condition and answers 412 Precondition Failed,
as S3 does, when it does not hold.

It also mends one answer. Tansu 0.6 takes a partition's end offset (ListOffsets "latest")
from the listing of its record batches: the batch with the newest LastModified, the first of
equals, plus one. S3 listings give LastModified to the second, so when several batches were
written in the last second the end offset falls short (measured: 81 of 100), and faust's
table recovery, which reads a changelog only up to that offset, missed the newest state. In a
complete listing of a partition's `records/`, the gate dates the last batch (the highest
offset: keys are zero-padded offsets) a millisecond after every other, so it is the newest.

    python -m streams.s3gate --port 14569 --upstream http://127.0.0.1:14570
"""

from __future__ import annotations

import argparse
import asyncio
import re
from datetime import UTC, datetime, timedelta

from aiohttp import ClientSession, ClientTimeout, web

HOP_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive"})
CONDITIONS = ("If-Match", "If-None-Match")
PRECONDITION_FAILED = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>PreconditionFailed</Code>'
    "<Message>At least one of the pre-conditions you specified did not hold</Message></Error>"
)


def holds(condition: str, value: str, current_etag: str | None) -> bool:
    """Whether a PUT's condition holds for the object as it is (None: it does not exist)."""
    if condition == "If-None-Match":
        return current_etag is None if value.strip() == "*" else current_etag != value
    if current_etag is None:
        return False
    wanted = {tag.strip() for tag in value.split(",")}
    return "*" in wanted or current_etag in wanted


LAST_MODIFIED = re.compile(rb"<LastModified>([^<]+)</LastModified>")
RECORDS_LISTING = re.compile(rb"<Prefix>[^<]*/records/</Prefix>")
COMPLETE = b"<IsTruncated>false</IsTruncated>"


def _s3_time(value: bytes) -> datetime:
    return datetime.fromisoformat(value.decode().replace("Z", "+00:00"))


def newest_last(listing: bytes) -> bytes:
    """A ListObjects answer with its last entry dated after all others, if it lists the whole
    of a partition's record batches; any other answer unchanged."""
    if not (RECORDS_LISTING.search(listing) and COMPLETE in listing):
        return listing
    stamps = list(LAST_MODIFIED.finditer(listing))
    if len(stamps) < 2:
        return listing
    newest = max(_s3_time(m.group(1)) for m in stamps) + timedelta(milliseconds=1)
    last = stamps[-1]
    dated = newest.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return listing[: last.start(1)] + dated.encode() + listing[last.end(1) :]


def make_app(upstream: str) -> web.Application:
    lock = asyncio.Lock()  # one conditional write at a time: check and write are one step
    session: dict[str, ClientSession] = {}

    async def start(app: web.Application) -> None:
        session["s"] = ClientSession(timeout=ClientTimeout(total=60), auto_decompress=False)

    async def stop(app: web.Application) -> None:
        await session["s"].close()

    async def forward(
        request: web.Request, body: bytes, drop: tuple[str, ...] = ()
    ) -> web.Response:
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in HOP_HEADERS and k not in drop
        }
        async with session["s"].request(
            request.method, upstream + request.path_qs, headers=headers, data=body
        ) as answer:
            payload = await answer.read()
            out = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_HEADERS}
            listing = request.method == "GET" and "prefix" in request.query
            if listing and "Content-Encoding" not in answer.headers:
                payload = newest_last(payload)
            return web.Response(status=answer.status, headers=out, body=payload)

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        conditions = [(c, request.headers[c]) for c in CONDITIONS if c in request.headers]
        if request.method != "PUT" or not conditions:
            return await forward(request, body)
        async with lock:
            head_headers = {
                k: v
                for k, v in request.headers.items()
                if k.lower().startswith(("authorization", "x-amz-"))
            }
            async with session["s"].head(upstream + request.path, headers=head_headers) as head:
                etag = head.headers.get("ETag") if head.status == 200 else None
            if not all(holds(c, v, etag) for c, v in conditions):
                return web.Response(
                    status=412, text=PRECONDITION_FAILED, content_type="application/xml"
                )
            return await forward(request, body, drop=CONDITIONS)

    app = web.Application(client_max_size=1024**3)
    app.router.add_route("*", "/{path:.*}", handle)
    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="s3rver's URL")
    args = parser.parse_args()
    web.run_app(make_app(args.upstream), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
