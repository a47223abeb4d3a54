"""Logging in and out, who am I, users and keys for admins, and the API's own document.

GET  /login, POST /login      the login form (double-submit CSRF token), then a session
POST /logout                  ends the session (needs its CSRF token)
GET  /                        start page: who is logged in, where to go
GET  /v1/me                   the caller, its roles, and the session's CSRF token
GET  /v1/access/users|keys    admins: who has access (never a secret)
POST /v1/access/keys          admins: a new API key, shown once
DELETE /v1/access/keys/{id}   admins: revoke a key
GET  /openapi.json            this API, for integrators and for schemathesis
"""

from __future__ import annotations

import asyncio
import html
import math
import re
import secrets
import time
from importlib import resources
from typing import TYPE_CHECKING

from aiohttp import web

from access.limits import LoginThrottle
from access.roles import ROLES, Permission
from access.store import KEY_PREFIX, AccessError
from streams.openapi import document
from streams.web import LOGIN_COOKIE, SESSION_COOKIE, Api, Call, Rejected, same_secret

if TYPE_CHECKING:
    from streams.app import Service

STATIC = resources.files("streams") / "static"
STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}
STATIC_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}\.(css|js|svg)$")


def safe_next(target: str | None) -> str:
    """Only a path on this site: '//evil.example' and 'https://...' would be open redirects."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    # Browsers drop tabs and line breaks from URLs: '/\t/evil.example' would become '//evil...'.
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in target):
        return "/"
    return target


def login_page(csrf: str, target: str, error: str | None = None) -> str:
    message = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Log in - outage-correlator</title>
<link rel="stylesheet" href="/static/base.css"></head>
<body><main class="login">
<h1>outage-correlator</h1>
{message}
<form method="post" action="/login">
<input type="hidden" name="csrf_token" value="{html.escape(csrf)}">
<input type="hidden" name="next" value="{html.escape(target)}">
<label for="name">User name</label>
<input id="name" name="name" autocomplete="username" required autofocus>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Log in</button>
</form></main></body></html>"""


def start_page(call: Call) -> str:
    assert call.principal is not None and call.session is not None
    roles = ", ".join(sorted(call.principal.roles))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>outage-correlator</title>
<link rel="stylesheet" href="/static/base.css"></head>
<body><main>
<h1>outage-correlator</h1>
<p>Logged in as <strong>{html.escape(call.principal.name)}</strong> ({html.escape(roles)}).</p>
<ul>
<li><a href="/console">Agent console</a></li>
<li><a href="/board">Shift board</a></li>
<li><a href="/v1/incidents">Active incidents (JSON)</a></li>
<li><a href="/openapi.json">API description (OpenAPI)</a></li>
</ul>
<form method="post" action="/logout">
<input type="hidden" name="csrf_token" value="{html.escape(call.session.csrf)}">
<button type="submit">Log out</button>
</form></main></body></html>"""


def html_response(body: str, status: int = 200) -> web.Response:
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")


def register(service: Service, api: Api) -> None:
    op, store = api.op, api.access
    throttle = LoginThrottle.standard(
        per_name=service.settings.login_attempts,
        per_address=service.settings.login_address_attempts,
        per_minute=service.settings.login_failures_per_minute,
    )

    def set_cookie(response: web.StreamResponse, name: str, value: str, max_age: int) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            httponly=True,
            samesite="Lax" if name == SESSION_COOKIE else "Strict",
            secure=api.cookie_secure,
        )

    @op(
        "GET",
        "/login",
        "public",
        "The login form",
        produces=("text/html",),
        responses={200: "form"},
    )
    async def get_login(call: Call) -> web.Response:
        csrf = secrets.token_urlsafe(32)
        response = html_response(login_page(csrf, safe_next(call.query.get("next"))))
        set_cookie(response, LOGIN_COOKIE, csrf, 3600)
        return response

    @op(
        "POST",
        "/login",
        "public",
        "Log in: form or JSON {name, password, csrf_token}; the token is the login cookie's",
        body={
            "type": "object",
            "required": ["name", "password", "csrf_token"],
            "properties": {
                "name": {"type": "string"},
                "password": {"type": "string"},
                "csrf_token": {"type": "string"},
                "next": {"type": "string"},
            },
        },
        form=True,
        responses={
            200: "logged in (JSON)",
            303: "logged in (form)",
            401: "wrong name or password",
            403: "the login form's token is missing or wrong",
            429: "too many failed logins for this name, address or service (see Retry-After)",
            503: "too many password checks at once (see Retry-After)",
        },
    )
    async def post_login(call: Call) -> web.StreamResponse:
        fields = await call.fields()
        name, password = str(fields.get("name", "")), str(fields.get("password", ""))
        target = safe_next(str(fields.get("next", "") or ""))
        expected = call.request.cookies.get(LOGIN_COOKIE, "")
        sent = str(fields.get("csrf_token", ""))
        if not expected or not same_secret(sent, expected):
            raise Rejected(403, "login form expired or forged: open /login again")
        # The TCP peer: behind a reverse proxy that is the proxy, so its clients share one
        # address's limit (no X-Forwarded-For is trusted: any client could write one).
        address = call.request.remote or ""
        # No user's name is longer than 64: a longer one is kept as its first 65 characters.
        who = name[:65]
        wait, limit = throttle.wait(who, address, time.monotonic())
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            by = {"name": f"for {who!r}", "address": "from your address"}.get(
                limit, "on this service"
            )
            rejection = Rejected(429, f"too many failed logins {by}; retry in {seconds} s")
            rejection.headers["Retry-After"] = str(seconds)
            raise rejection
        # argon2 runs in its own lane: key and session lookups never queue behind it.
        principal = await api.passwords.run(lambda: store.verify_password(name, password))
        if principal is None:
            throttle.failed(who, address, time.monotonic())
            if call.is_form():
                return html_response(
                    login_page(expected, target, "Wrong user name or password."), 401
                )
            raise Rejected(401, "wrong user name or password")
        throttle.succeeded(who, address)
        token, session = await asyncio.to_thread(
            store.open_session, principal, api.session_lifetime
        )
        response: web.StreamResponse
        if call.is_form():
            response = web.Response(status=303, headers={"Location": target})
        else:
            body = {
                "name": principal.name,
                "roles": sorted(principal.roles),
                "csrf_token": session.csrf,
            }
            response = web.json_response(body)
        set_cookie(response, SESSION_COOKIE, token, int(api.session_lifetime.total_seconds()))
        response.del_cookie(LOGIN_COOKIE, path="/")
        return response

    @op(
        "POST",
        "/logout",
        "authenticated",
        "Log out (a session needs its CSRF token)",
        form=True,
        responses={200: "logged out (JSON)", 303: "logged out (form)"},
    )
    async def post_logout(call: Call) -> web.StreamResponse:
        cookie = call.request.cookies.get(SESSION_COOKIE)
        if cookie:
            await asyncio.to_thread(store.close_session, cookie)
            api.forget(user=call.principal.name if call.principal else None)
        response: web.StreamResponse = (
            web.Response(status=303, headers={"Location": "/login"})
            if call.is_form()
            else web.json_response({"logged_out": True})
        )
        response.del_cookie(SESSION_COOKIE, path="/")
        return response

    @op(
        "GET",
        "/",
        "authenticated",
        "Start page",
        page=True,
        produces=("text/html", "application/json"),
        responses={200: "the page (JSON for an API key)", 303: "to /login without a session"},
    )
    async def get_start(call: Call) -> web.Response:
        if call.session is None:  # an API key has no page to land on
            return web.json_response({"name": call.principal.name if call.principal else None})
        return html_response(start_page(call))

    @op("GET", "/v1/me", "authenticated", "Who am I", responses={200: "the caller"})
    async def get_me(call: Call) -> web.Response:
        assert call.principal is not None
        return web.json_response(
            {
                "name": call.principal.name,
                "kind": call.principal.kind,
                "roles": sorted(call.principal.roles),
                "csrf_token": call.session.csrf if call.session else None,
            }
        )

    @op("GET", "/v1/access/users", Permission.MANAGE_ACCESS, "Users", responses={200: "list"})
    async def get_users(call: Call) -> web.Response:
        return web.json_response({"users": await asyncio.to_thread(store.users)})

    @op("GET", "/v1/access/keys", Permission.MANAGE_ACCESS, "API keys", responses={200: "list"})
    async def get_keys(call: Call) -> web.Response:
        return web.json_response({"keys": await asyncio.to_thread(store.keys)})

    @op(
        "POST",
        "/v1/access/keys",
        Permission.MANAGE_ACCESS,
        "A new API key for a system; the token is shown only in this answer",
        body={
            "type": "object",
            "required": ["name", "roles"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"},
                "roles": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "string", "enum": list(ROLES)},
                },
            },
        },
        responses={201: "the key", 400: "bad name or roles"},
    )
    async def post_key(call: Call) -> web.Response:
        fields = await call.fields()
        name, roles = fields.get("name"), fields.get("roles")
        extra = sorted(set(fields) - {"name", "roles"})
        if extra:
            raise Rejected(400, f"unexpected field {extra[0]!r}; give name and roles")
        if not isinstance(name, str) or not isinstance(roles, list) or not roles:
            raise Rejected(400, "give name (text) and roles (a list of role names)")
        if not all(isinstance(r, str) for r in roles):
            raise Rejected(400, f"roles are names: {', '.join(ROLES)}")
        try:
            key_id, token = await asyncio.to_thread(store.create_key, name, frozenset(roles))
        except AccessError as error:
            raise Rejected(400, str(error)) from None
        return web.json_response(
            {"key_id": key_id, "name": name, "roles": sorted(roles), "token": token}, status=201
        )

    @op(
        "DELETE",
        "/v1/access/keys/{key_id}",
        Permission.MANAGE_ACCESS,
        "Revoke an API key",
        responses={200: "revoked", 404: "no such active key"},
    )
    async def delete_key(call: Call) -> web.Response:
        try:
            await asyncio.to_thread(store.revoke_key, call.params["key_id"])
        except AccessError as error:
            raise Rejected(404, str(error)) from None
        api.forget(token_prefix=f"{KEY_PREFIX}_{call.params['key_id']}_")
        return web.json_response({"revoked": call.params["key_id"]})

    @op("GET", "/openapi.json", "public", "This document", responses={200: "OpenAPI 3.1"})
    async def get_openapi(call: Call) -> web.Response:
        return web.json_response(document(api))

    @op(
        "GET",
        "/static/{name}",
        "public",
        "Styles and scripts of the pages (shipped with the service, no CDN)",
        produces=tuple(STATIC_TYPES.values()),
        responses={200: "the file", 404: "no such file"},
    )
    async def get_static(call: Call) -> web.Response:
        name = call.params["name"]
        # Only plain names of shipped files: no path, no dot files, nothing odd to the OS.
        if not STATIC_NAME.match(name) or not (STATIC / name).is_file():
            raise Rejected(404, f"no static file {name!r}")
        kind = STATIC_TYPES[name[name.rfind(".") :]]
        return web.Response(body=(STATIC / name).read_bytes(), content_type=kind)
