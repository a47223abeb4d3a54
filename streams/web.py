"""The HTTP edge: one table of operations, and the checks every request passes through.

Each operation names the permission it needs; `Api.mount` turns the table into faust views
that, in this order: authenticate (API key or session cookie; public operations ignore
credentials), check the role, check the CSRF token of a session's state-changing request, apply
the operation's rate limit, check the query's declared limits, run the handler, and turn any bug
into a 500 without a stack trace. The same table gives the OpenAPI document and the role-matrix
tests, so no endpoint can be added without saying who may call it. Requests aiohttp cannot
parse are answered in the same JSON shape (`JsonErrorsConnection`).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import math
import re
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from http import HTTPStatus
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qs, quote

import structlog
from aiohttp import http_exceptions, web, web_protocol, web_server
from faust.web import View

from access.limits import TokenBuckets
from access.roles import Permission, permits, roles_with
from access.store import AccessStore, Principal, Session

log = structlog.get_logger("outage.http")

SESSION_COOKIE = "outage_session"
LOGIN_COOKIE = "outage_login_csrf"
MAX_BODY_BYTES = 64 * 1024  # every request body; events have the same limit
CACHE_SECONDS = 5.0
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    # Pages ship their own scripts and styles; nothing is loaded from elsewhere.
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
}

Access = Permission | Literal["public", "authenticated"]
T = TypeVar("T")


class Rejected(Exception):
    """Raised by a handler or a check: answered as `status` with `{"error": reason, ...}`."""

    def __init__(self, status: int, reason: str, **extra: Any) -> None:
        super().__init__(reason)
        self.status, self.reason, self.extra = status, reason, extra
        self.headers: dict[str, str] = {}


@dataclass(frozen=True)
class Param:
    """A query parameter, for validation of presence and for the API document."""

    name: str
    description: str
    required: bool = False
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    access: Access
    summary: str
    handler: Callable[[Call], Awaitable[web.StreamResponse]]
    query: tuple[Param, ...] = ()
    body: Mapping[str, Any] | None = None  # JSON Schema of a JSON body
    form: bool = False  # also takes an HTML form (urlencoded)
    responses: Mapping[int, str] = field(default_factory=dict)  # success and specific errors
    # True: the ingest limit; or the buckets of another limit (`Api.limit`).
    rate_limited: bool | TokenBuckets = False
    page: bool = False  # an HTML page: a visitor without a session is sent to /login
    produces: tuple[str, ...] = ("application/json",)  # content types of its 2xx answers


@dataclass
class Call:
    """One request as a handler sees it: who asks, and the parts of the request."""

    request: web.Request
    params: Mapping[str, str]
    principal: Principal | None
    session: Session | None
    api: Api
    _body: bytes | None = None

    @property
    def query(self) -> Mapping[str, str]:
        return self.request.query

    async def body(self) -> bytes:
        """The body, refused over MAX_BODY_BYTES without reading the rest."""
        if self._body is None:
            if (self.request.content_length or 0) > MAX_BODY_BYTES:
                raise Rejected(413, f"body over {MAX_BODY_BYTES} bytes")
            data = await self.request.content.read(MAX_BODY_BYTES + 1)
            if len(data) > MAX_BODY_BYTES:
                raise Rejected(413, f"body over {MAX_BODY_BYTES} bytes")
            self._body = data
        return self._body

    def is_form(self) -> bool:
        return self.request.content_type == "application/x-www-form-urlencoded"

    async def fields(self) -> dict[str, Any]:
        """A JSON object or an urlencoded form, as a dict; anything else is a 4xx."""
        raw = await self.body()
        if self.is_form():
            try:
                form = parse_qs(raw.decode(), keep_blank_values=True, max_num_fields=50)
            except (UnicodeDecodeError, ValueError) as error:
                raise Rejected(400, f"malformed form: {error}") from None
            return {k: v[-1] for k, v in form.items()}
        if raw and self.request.content_type != "application/json":
            raise Rejected(415, "send the body as application/json")
        try:
            body = json.loads(raw or b"{}")
        except (ValueError, RecursionError) as error:
            raise Rejected(400, f"malformed JSON: {error}") from None
        if not isinstance(body, dict):
            raise Rejected(400, "the body must be a JSON object")
        return body

    @property
    def by(self) -> str:
        """Who to name on the timeline for what this request does."""
        return self.principal.label if self.principal else "anonymous"


def same_secret(sent: str, expected: str) -> bool:
    """Constant-time comparison that also takes what a hostile client sends (any unicode)."""
    return hmac.compare_digest(
        sent.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )


def problem(status: int, reason: str, **extra: Any) -> web.Response:
    return web.json_response({"error": reason, **extra}, status=status)


class Lane:
    """A few threads of its own for one kind of slow work, and a cap on how much may wait.

    `asyncio.to_thread` shares the loop's default pool: 48 logins at once (argon2, 64 MiB and
    0.05-0.2 s each) took the worker from 451 to 835 MiB and kept an API-key lookup queued
    behind them for 4.5 s (issue 15). In a lane such work waits only for its own kind, and past
    `threads + waiting` the request gets 503 with Retry-After at once, without the work.
    """

    def __init__(self, what: str, *, threads: int, waiting: int) -> None:
        self.what = what
        self.most = threads + waiting
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix=what.replace(" ", "-"))
        self._lock = threading.Lock()  # the count goes down on the pool's threads
        self._pending = 0

    async def run(self, work: Callable[[], T]) -> T:
        with self._lock:
            if self._pending >= self.most:
                rejection = Rejected(503, f"too many {self.what} at once; retry in 1 s")
                rejection.headers["Retry-After"] = "1"
                raise rejection
            self._pending += 1
        future = self._pool.submit(work)
        # Counted down when the thread is done, not when the request is: a request cancelled
        # mid-way leaves its work running, and that still takes a slot.
        future.add_done_callback(self._done)
        return await asyncio.wrap_future(future)

    @property
    def pending(self) -> int:
        return self._pending

    def _done(self, _future: Future[Any]) -> None:
        with self._lock:
            self._pending -= 1


class Api:
    def __init__(
        self,
        access: AccessStore,
        *,
        session_lifetime: timedelta,
        cookie_secure: bool,
        ingest_rate: float,
        ingest_burst: int,
        login_attempts: int | None = None,  # unused: streams/account.py reads login limits
    ) -> None:
        self.access = access
        self.session_lifetime = session_lifetime
        self.cookie_secure = cookie_secure
        self.buckets = TokenBuckets(rate=ingest_rate, burst=ingest_burst)
        self._limits: dict[str, TokenBuckets] = {"ingest": self.buckets}
        # argon2 takes 64 MiB and 0.05-0.2 s a check: two at once bound both memory and CPU,
        # and eight waiting are under a second of queue at 0.2 s each (measured on 2 cores).
        self.passwords = Lane("password checks", threads=2, waiting=8)
        # Fuzzy address matching is pure Python (0.3-90 ms, docs/BENCHMARKS.md): off the event
        # loop it cannot stall /health or correlation; the cap bounds the backlog.
        self.matching = Lane("address lookups", threads=2, waiting=32)
        self.operations: list[Operation] = []
        self._cache: dict[tuple[str, str], tuple[float, Any]] = {}

    def limit(self, name: str, rate: float, burst: int) -> TokenBuckets:
        """The token buckets called `name`, made on first use: operations may share a limit."""
        return self._limits.setdefault(name, TokenBuckets(rate=rate, burst=burst))

    def op(
        self, method: str, path: str, access: Access, summary: str, **options: Any
    ) -> Callable[[Callable[[Call], Awaitable[web.StreamResponse]]], Any]:
        def add(handler: Callable[[Call], Awaitable[web.StreamResponse]]) -> Any:
            self.operations.append(
                Operation(method.upper(), path, access, summary, handler, **options)
            )
            return handler

        return add

    # authentication ----------------------------------------------------------------------

    async def identify(self, request: web.Request) -> tuple[Principal | None, Session | None]:
        """An API key if one is sent (and then only it counts), else the session cookie."""
        header = request.headers.get("Authorization", "")
        token = request.headers.get("X-API-Key", "")
        if header:
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise Rejected(401, "Authorization must be 'Bearer <API key>'")
            token = value.strip()
        if token:
            principal = self._cached("key", token)
            if principal is None:
                principal = await asyncio.to_thread(self.access.verify_key, token)
                if principal is None:
                    raise Rejected(401, "the API key is not valid (unknown or revoked)")
                self._remember("key", token, principal)
            return principal, None
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            session = self._cached("session", cookie)
            if session is None:
                session = await asyncio.to_thread(self.access.session, cookie)
                if session is not None:
                    self._remember("session", cookie, session)
            if session is not None:
                return session.principal, session
        return None, None

    # A lookup must stay sub-millisecond: credentials checked in the last few seconds are not
    # read again. Revoking in this worker forgets them at once; other workers within CACHE_SECONDS.
    def _cached(self, kind: str, token: str) -> Any:
        hit = self._cache.get((kind, token))
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1]

    def _remember(self, kind: str, token: str, value: Principal | Session) -> None:
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[(kind, token)] = (time.monotonic() + CACHE_SECONDS, value)

    def forget(self, token_prefix: str = "", user: str | None = None) -> None:
        """Drop cached credentials: keys whose token starts with the prefix, a user's sessions."""
        for kind, token in list(self._cache):
            value = self._cache[(kind, token)][1]
            if (kind == "key" and token_prefix and token.startswith(token_prefix)) or (
                kind == "session" and (user is None or value.principal.name == user)
            ):
                self._cache.pop((kind, token), None)

    async def authorize(self, operation: Operation, call: Call) -> None:
        if operation.access == "public":
            return
        if call.principal is None:
            rejection = Rejected(401, "log in or send an API key (Authorization: Bearer <key>)")
            rejection.headers["WWW-Authenticate"] = 'Bearer realm="outage-correlator"'
            raise rejection
        if isinstance(operation.access, Permission) and not permits(
            call.principal.roles, operation.access
        ):
            needed = " or ".join(roles_with(operation.access))
            held = ", ".join(sorted(call.principal.roles))
            raise Rejected(403, f"this needs the role {needed}; {call.by} has {held}")
        if call.session is not None and operation.method in UNSAFE:
            await self.check_csrf(call)
        if operation.rate_limited:
            buckets = self.buckets if operation.rate_limited is True else operation.rate_limited
            wait = buckets.take(call.by, time.monotonic())
            if wait > 0:
                rejection = Rejected(
                    429,
                    f"rate limit: {buckets.rate:g} requests/s per key "
                    f"(burst {buckets.burst}); retry in {wait:.2f} s",
                )
                rejection.headers["Retry-After"] = str(max(1, math.ceil(wait)))
                raise rejection

    async def check_csrf(self, call: Call) -> None:
        """A browser sends the cookie on its own; the token proves the page was ours."""
        assert call.session is not None
        sent = call.request.headers.get("X-CSRF-Token", "")
        if not sent and call.is_form():
            sent = str((await call.fields()).get("csrf_token", ""))
        if not sent or not same_secret(sent, call.session.csrf):
            raise Rejected(403, "CSRF token missing or wrong: reload the page and try again")

    # mounting ----------------------------------------------------------------------------

    def mount(self, app: Any) -> None:
        answer_malformed_requests_as_json()
        by_path: dict[str, dict[str, Operation]] = {}
        for operation in self.operations:
            by_path.setdefault(operation.path, {})[operation.method] = operation
        for path, methods in by_path.items():
            handlers = {m.lower(): self._view_method(op) for m, op in methods.items()}
            name = "View_" + "".join(c if c.isalnum() else "_" for c in path)
            app.page(path, name=name)(type(name, (View,), handlers))

    def _view_method(self, operation: Operation) -> Callable[..., Awaitable[web.StreamResponse]]:
        async def handle(view: View, request: web.Request, **params: str) -> web.StreamResponse:
            return await self.run(operation, request, params)

        return handle

    async def run(
        self, operation: Operation, request: web.Request, params: Mapping[str, str]
    ) -> web.StreamResponse:
        try:
            # A public operation needs no credentials, so a stale or mistyped one sent along
            # (a monitor's header, an old cookie) is no reason to refuse it: it is not read.
            principal, session = (
                (None, None) if operation.access == "public" else await self.identify(request)
            )
            call = Call(request, params, principal, session, self)
            if operation.page and principal is None:
                target = quote(request.path_qs, safe="")
                raise web.HTTPSeeOther(f"/login?next={target}")
            await self.authorize(operation, call)
            for param in operation.query:
                check_query(param, request.query.get(param.name))
            return await operation.handler(call)
        except Rejected as rejection:
            response = problem(rejection.status, rejection.reason, **rejection.extra)
            response.headers.update(rejection.headers)
            return response
        except web.HTTPRedirection as redirect:
            return web.Response(status=redirect.status, headers=redirect.headers)
        except Exception as error:
            # A bug must answer 500 with a reference, never a stack trace, and stay logged.
            reference = f"{time.time_ns():x}"
            log.error(
                "http.failed",
                path=request.path,
                reference=reference,
                error=type(error).__name__,
                trace=traceback.format_exc(limit=20),
            )
            return problem(500, f"internal error; the service log has reference {reference}")


def check_query(param: Param, value: str | None) -> None:
    """What the operation table declares of a query parameter: required, maxLength, enum."""
    if not value and param.required:
        raise Rejected(400, f"give {param.name}=<{param.description}>")
    if value is None:
        return
    most = param.schema.get("maxLength")
    if most is not None and len(value) > most:
        raise Rejected(400, f"{param.name} has {len(value)} characters; at most {most}")
    allowed = param.schema.get("enum")
    if allowed is not None and value not in allowed:
        *first, last = (str(a) for a in allowed)
        choices = f"{', '.join(first)} or {last}" if first else last
        raise Rejected(400, f"{param.name} must be {choices}")


@web.middleware
async def json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Answers aiohttp makes itself (no such path, a method a path lacks) in our JSON shape."""
    try:
        response = await handler(request)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        response = problem(error.status, f"{error.reason}: {request.method} {request.path}")
        if error.status == 405:
            response.headers["Allow"] = error.headers.get("Allow", "")
    if not response.prepared:  # a stream sent its headers already (and set these itself)
        for header, value in SECURITY_HEADERS.items():
            response.headers.setdefault(header, value)
    return response


def malformed(exc: BaseException | None, line_limit: int) -> str:
    """Why aiohttp could not read a request, in words that echo none of what was sent."""
    if isinstance(exc, http_exceptions.LineTooLong):
        what = f"a request line or header over {line_limit} bytes"
    elif isinstance(exc, http_exceptions.InvalidURLError):  # its message is the URL itself
        what = "a URL that cannot be read"
    else:
        text = exc.message if isinstance(exc, http_exceptions.HttpProcessingError) else exc
        # aiohttp's messages name the fault first, then quote the input after ':' or a quote;
        # whatever comes through is clipped short.
        what = re.split(r"""[:'"(\n]""", str(text or ""), maxsplit=1)[0].strip()[:80]
    return f"malformed HTTP request: {what or 'unreadable'}"


class JsonErrorsConnection(web_protocol.RequestHandler):
    """aiohttp's handler of a connection, answering what it cannot parse in our JSON shape.

    A request aiohttp cannot parse (a request line over 8 KB, a bad header token) never
    reaches a middleware: aiohttp answered it with a text/plain 400 echoing the input, without
    SECURITY_HEADERS, and logged a multi-line traceback with the input in it (issue 15).
    """

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status == 500:
            reference = f"{time.time_ns():x}"
            error, trace = (
                (type(exc).__name__, "".join(traceback.format_exception(exc)))
                if exc
                else (None, None)
            )
            log.error("http.failed", reference=reference, error=error, trace=trace)
            reason = f"internal error; the service log has reference {reference}"
        elif status > 500:
            reason = HTTPStatus(status).phrase
        else:
            reason = malformed(exc, self.max_line_size)
            # A TLS handshake on the plain port is what scanners send: not worth an info line.
            noisy = isinstance(exc, http_exceptions.BadHttpMethod)
            (log.debug if noisy else log.info)(
                "http.malformed",
                remote=request.remote,
                status=status,
                reason=reason,
                # One line, clipped; the log processor masks phone numbers in it.
                detail=" ".join(str(message or exc or "").split())[:300],
            )
        if request.writer.output_size > 0:  # half an answer is out: none can replace it
            raise ConnectionError("an answer was partly sent; cannot send the error instead")
        response = problem(status, reason)
        response.headers.update(SECURITY_HEADERS)
        response.force_close()
        return response


def answer_malformed_requests_as_json() -> None:
    """Serve this process's HTTP connections with JsonErrorsConnection.

    aiohttp has no option for that class: its Server makes each connection's RequestHandler
    by the module-level name, so the name is pointed at the subclass. The worker serves one
    aiohttp app, faust's (the S3 gate runs in a process of its own).
    """
    web_server.RequestHandler = JsonErrorsConnection  # type: ignore[misc]  # no option for it
