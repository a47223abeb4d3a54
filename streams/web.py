"""The HTTP edge: one table of operations, and the checks every request passes through.

Each operation names the permission it needs; `Api.mount` turns the table into faust views
that, in this order: authenticate (API key or session cookie), check the role, check the CSRF
token of a session's state-changing request, apply the ingest rate limit, run the handler, and
turn any bug into a 500 without a stack trace. The same table gives the OpenAPI document and
the role-matrix tests, so no endpoint can be added without saying who may call it.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import math
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal
from urllib.parse import parse_qs, quote

import structlog
from aiohttp import web
from faust.web import View

from access.limits import FailureWindow, TokenBuckets
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
    rate_limited: bool = False
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


class Api:
    def __init__(
        self,
        access: AccessStore,
        *,
        session_lifetime: timedelta,
        cookie_secure: bool,
        ingest_rate: float,
        ingest_burst: int,
        login_attempts: int,
    ) -> None:
        self.access = access
        self.session_lifetime = session_lifetime
        self.cookie_secure = cookie_secure
        self.buckets = TokenBuckets(rate=ingest_rate, burst=ingest_burst)
        self.login_failures = FailureWindow(limit=login_attempts)
        self.operations: list[Operation] = []
        self._cache: dict[tuple[str, str], tuple[float, Any]] = {}

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
            wait = self.buckets.take(call.by, time.monotonic())
            if wait > 0:
                rejection = Rejected(
                    429,
                    f"rate limit: {self.buckets.rate:g} requests/s per key "
                    f"(burst {self.buckets.burst}); retry in {wait:.2f} s",
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
            principal, session = await self.identify(request)
            call = Call(request, params, principal, session, self)
            if operation.page and principal is None:
                target = quote(request.path_qs, safe="")
                raise web.HTTPSeeOther(f"/login?next={target}")
            await self.authorize(operation, call)
            for param in operation.query:
                if param.required and not request.query.get(param.name):
                    raise Rejected(400, f"give {param.name}=<{param.description}>")
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
