"""What Tansu's s3:// storage needs of S3 and s3rver does not give, in front of s3rver.

1. Conditional writes. Tansu keeps each partition's offsets in S3 objects it updates
   read-modify-write, guarded by conditional PUTs (`If-Match: <etag>`, `If-None-Match: *`).
   s3rver ignores those headers: two produces at once then overwrite each other's update, and
   acknowledged records vanish (measured here: 400 records produced over 4 partitions, 314
   left). The gate makes each write atomic: under one lock it compares the object's current
   ETag (a HEAD) with the condition and answers 412 Precondition Failed, as S3 does.
2. Exact end offsets. Tansu 0.6 takes a partition's end offset (ListOffsets "latest") from
   the listing of its record batches: the batch with the newest LastModified, the first of
   equals, plus one. S3 gives LastModified to the second, so when several batches were written
   in the last second the end offset fell short (81 of 100), and faust's table recovery, which
   reads a changelog up to that offset, missed the newest state. In a listing of a partition's
   `records/`, the gate dates the last batch (the highest offset: keys are zero-padded
   offsets) a millisecond after every other.
3. Listings that cost nothing. Tansu lists a partition's batches for every fetch, and idle
   consumers fetch many times a second; s3rver walks its directories for each, and produces
   stalled for minutes behind the fetches. Every write passes the gate, so once it has read a
   prefix (all pages) it keeps that listing up to date from the writes and answers it itself
   (`Listings`).

    python -m streams.s3gate --port 14569 --upstream http://127.0.0.1:14570
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from aiohttp import ClientSession, ClientTimeout, web

HOP_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive"})
CONDITIONS = ("If-Match", "If-None-Match")
# A plain ListObjectsV2 request, which the gate answers itself (any other passes through).
LISTING_QUERY = frozenset({"list-type", "prefix", "max-keys"})
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


@dataclass(frozen=True)
class Entry:
    """One object as a listing shows it."""

    key: str
    last_modified: str  # as S3 writes it: 2026-11-30T14:40:15.000Z
    etag: str  # quoted, as S3 sends it
    size: int


def s3_time(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def newest_last(prefix: str, entries: list[Entry]) -> list[Entry]:
    """`entries` in key order, the last dated 1 ms after all others when they are a partition's
    record batches (the last key is the highest offset: keys are zero-padded offsets)."""
    ordered = sorted(entries, key=lambda e: e.key)
    if prefix.endswith("/records/") and len(ordered) > 1:
        times = (datetime.fromisoformat(e.last_modified.replace("Z", "+00:00")) for e in ordered)
        newest = max(times) + timedelta(milliseconds=1)
        ordered[-1] = replace(ordered[-1], last_modified=s3_time(newest))
    return ordered


def parse_listing(xml: bytes) -> tuple[list[Entry], str | None]:
    """The objects of one ListObjectsV2 page, and the token of the next page (None: last)."""
    root = ElementTree.fromstring(xml)
    fields: dict[str, str] = {}
    entries, token, truncated = [], None, True
    for element in root.iter():
        tag = element.tag.rsplit("}", 1)[-1]
        if tag == "Contents":
            fields = {}
        elif tag in ("Key", "LastModified", "ETag", "Size"):
            fields[tag] = element.text or ""
            if len(fields) == 4:
                entries.append(
                    Entry(
                        fields["Key"], fields["LastModified"], fields["ETag"], int(fields["Size"])
                    )
                )
                fields = {}
        elif tag == "NextContinuationToken":
            token = element.text
        elif tag == "IsTruncated":
            truncated = element.text == "true"
    return entries, token if truncated else None


def render_listing(bucket: str, prefix: str, entries: dict[str, Entry]) -> bytes:
    """A complete ListObjectsV2 answer (one page, whatever the count); see `newest_last`."""
    contents = "".join(
        f"<Contents><Key>{escape(e.key)}</Key><LastModified>{e.last_modified}</LastModified>"
        f"<ETag>{escape(e.etag, {chr(34): '&quot;'})}</ETag><Size>{e.size}</Size>"
        "<StorageClass>STANDARD</StorageClass></Contents>"
        for e in newest_last(prefix, list(entries.values()))
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        f"<Name>{escape(bucket)}</Name><Prefix>{escape(prefix)}</Prefix>"
        f"<KeyCount>{len(entries)}</KeyCount><MaxKeys>{max(len(entries), 1000)}</MaxKeys>"
        f"<IsTruncated>false</IsTruncated>{contents}</ListBucketResult>"
    ).encode()


@dataclass
class Listings:
    """The objects under each prefix Tansu has listed, kept up to date by the writes.

    Tansu 0.6 lists a partition's batch objects for every fetch and every end offset, and a
    worker's consumers fetch every partition they follow many times a second, written to or
    not. s3rver walks its directories for each listing: produces stalled for minutes behind
    idle consumers' fetches. Every write reaches s3rver through this gate, so after a prefix's
    first listing (all pages, read from s3rver) the gate answers its listings itself.
    """

    prefixes: dict[str, dict[str, Entry]] = field(default_factory=dict)
    answers: dict[str, bytes] = field(default_factory=dict)  # prefix -> its listing, made once

    def answer(self, bucket: str, prefix: str) -> bytes:
        """The listing of `prefix` (read already), made once per change under it."""
        if prefix not in self.answers:
            self.answers[prefix] = render_listing(bucket, prefix, self.prefixes[prefix])
        return self.answers[prefix]

    def wrote(self, key: str, etag: str, size: int, at: datetime) -> None:
        for prefix, entries in self.prefixes.items():
            if key.startswith(prefix):
                entries[key] = Entry(key, s3_time(at), etag, size)
                self.answers.pop(prefix, None)

    def deleted(self, key: str | None) -> None:
        """`key` is gone (None: some keys are, which: read them again)."""
        if key is None:
            self.prefixes.clear()
            self.answers.clear()
        for prefix, entries in self.prefixes.items():
            if entries.pop(key or "", None) is not None:
                self.answers.pop(prefix, None)


def make_app(upstream: str) -> web.Application:
    # One write at a time, and none while a prefix is first read: a conditional write's check
    # and write are one step, and the listings see every write once, in order.
    lock = asyncio.Lock()
    session: dict[str, ClientSession] = {}
    listings = Listings()

    async def start(app: web.Application) -> None:
        session["s"] = ClientSession(timeout=ClientTimeout(total=60), auto_decompress=False)

    async def stop(app: web.Application) -> None:
        await session["s"].close()

    def passed_on(request: web.Request, drop: tuple[str, ...] = ()) -> dict[str, str]:
        return {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in HOP_HEADERS and k not in drop
        }

    async def forward(
        request: web.Request, body: bytes, drop: tuple[str, ...] = ()
    ) -> web.Response:
        async with session["s"].request(
            request.method,
            upstream + request.path_qs,
            headers=passed_on(request, drop),
            data=body,
        ) as answer:
            payload = await answer.read()
            out = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_HEADERS}
        if answer.status < 300:
            record_write(request, body, answer.headers.get("ETag", ""))
        return web.Response(status=answer.status, headers=out, body=payload)

    def record_write(request: web.Request, body: bytes, etag: str) -> None:
        parts = request.path.split("/", 2)  # /bucket/key
        key = parts[2] if len(parts) == 3 and not request.query else None
        if request.method == "PUT" and key is not None:
            listings.wrote(key, etag, len(body), datetime.now(UTC))
        elif request.method in ("PUT", "DELETE", "POST"):
            listings.deleted(key if request.method == "DELETE" else None)

    async def read_prefix(request: web.Request, prefix: str) -> dict[str, Entry] | None:
        """Every object under `prefix`, all pages, from s3rver (None: it refused)."""
        entries: dict[str, Entry] = {}
        query: dict[str, str] = {"list-type": "2", "prefix": prefix}
        while True:
            # s3rver accepts the request's signature although the query changed (the gate
            # starts it with --allow-mismatched-signatures).
            async with session["s"].get(
                upstream + request.path, params=query, headers=passed_on(request)
            ) as answer:
                if answer.status != 200:
                    return None
                page, token = parse_listing(await answer.read())
            entries.update((e.key, e) for e in page)
            if token is None:
                return entries
            query["continuation-token"] = token

    async def listing(request: web.Request, prefix: str) -> web.Response:
        entries = listings.prefixes.get(prefix)
        if entries is None:
            async with lock:
                entries = listings.prefixes.get(prefix)
                if entries is None:
                    entries = await read_prefix(request, prefix)
                    if entries is None:
                        return await forward(request, b"")
                    listings.prefixes[prefix] = entries
        bucket = request.path.strip("/").split("/", 1)[0]
        return web.Response(body=listings.answer(bucket, prefix), content_type="application/xml")

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        query = request.query
        if request.method == "GET" and "prefix" in query and set(query) <= LISTING_QUERY:
            return await listing(request, query["prefix"])
        if request.method not in ("PUT", "DELETE", "POST"):
            return await forward(request, body)
        conditions = [(c, request.headers[c]) for c in CONDITIONS if c in request.headers]
        async with lock:
            if conditions:
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
