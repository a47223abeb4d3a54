"""Users, API keys and login sessions in one SQLite file (stdlib, safe across processes).

Secrets are never stored: passwords as argon2id hashes (a slow, memory-hard KDF), API keys and
session tokens as SHA-256 digests (they are 256-bit random, so a fast hash is enough and a
lookup per request stays cheap). A key is shown once, when it is made.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from access.roles import ROLES, Role

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    roles TEXT NOT NULL,
    created_at TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    roles TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    csrf TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
"""

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD = 10
KEY_PREFIX = "ock"
_hasher = PasswordHasher()  # argon2id, RFC 9106 "low memory" defaults (64 MiB, t=3)
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


class AccessError(ValueError):
    """A request to the access store that cannot be done; the message says why."""


@dataclass(frozen=True)
class Principal:
    """Who is asking: a person logged in, or a system holding an API key."""

    name: str
    kind: Literal["user", "key"]
    roles: frozenset[str]

    @property
    def label(self) -> str:
        """The name on the incident timeline: 'anna', or 'key:scada-north' for a system."""
        return self.name if self.kind == "user" else f"key:{self.name}"


@dataclass(frozen=True)
class Session:
    principal: Principal
    csrf: str
    expires_at: datetime


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def _plain(*values: str) -> bool:
    """Whether text from a client can be stored and hashed (lone surrogates cannot)."""
    try:
        for value in values:
            value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _roles_text(roles: frozenset[Role] | frozenset[str]) -> str:
    unknown = set(roles) - set(ROLES)
    if unknown or not roles:
        raise AccessError(f"roles must be some of: {', '.join(ROLES)}")
    return ",".join(r for r in ROLES if r in roles)


def _check_name(name: str) -> str:
    if not NAME.match(name):
        raise AccessError(
            f"name {name!r} must be 1-64 letters, digits or ._@- and start with a letter or digit"
        )
    return name


def _check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise AccessError(f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > 1024:
        raise AccessError("a password has at most 1024 characters")
    return password


def new_password() -> str:
    return secrets.token_urlsafe(15)


class AccessStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.executescript(SCHEMA)
        path.chmod(0o600)  # hashes only, but nobody else needs to read them

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=10)
        try:
            db.execute("PRAGMA journal_mode=WAL")  # readers in other workers do not block
            with db:
                yield db
        finally:
            db.close()

    # users -------------------------------------------------------------------------------

    def add_user(self, name: str, password: str, roles: frozenset[str]) -> None:
        _check_name(name)
        hashed = _hasher.hash(_check_password(password))
        try:
            with self._db() as db:
                db.execute(
                    "INSERT INTO users (name, password_hash, roles, created_at) VALUES (?,?,?,?)",
                    (name, hashed, _roles_text(roles), datetime.now(UTC).isoformat()),
                )
        except sqlite3.IntegrityError:
            raise AccessError(f"user {name!r} exists already") from None

    def set_password(self, name: str, password: str) -> None:
        hashed = _hasher.hash(_check_password(password))
        self._update_user(name, "password_hash = ?", hashed)
        self.end_sessions(name)  # a new password logs out every old session

    def set_roles(self, name: str, roles: frozenset[str]) -> None:
        self._update_user(name, "roles = ?", _roles_text(roles))

    def set_disabled(self, name: str, disabled: bool) -> None:
        self._update_user(name, "disabled = ?", int(disabled))
        if disabled:
            self.end_sessions(name)

    def remove_user(self, name: str) -> None:
        with self._db() as db:
            if db.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount == 0:
                raise AccessError(f"no user {name!r}")
        self.end_sessions(name)

    def _update_user(self, name: str, assignment: str, value: object) -> None:
        with self._db() as db:
            updated = db.execute(f"UPDATE users SET {assignment} WHERE name = ?", (value, name))
            if updated.rowcount == 0:
                raise AccessError(f"no user {name!r}")

    def users(self) -> list[dict[str, object]]:
        with self._db() as db:
            rows = db.execute(
                "SELECT name, roles, created_at, disabled FROM users ORDER BY name"
            ).fetchall()
        return [
            {"name": n, "roles": r.split(","), "created_at": c, "disabled": bool(d)}
            for n, r, c, d in rows
        ]

    def has_admin(self) -> bool:
        with self._db() as db:
            rows = db.execute("SELECT roles FROM users WHERE disabled = 0").fetchall()
        return any("admin" in roles.split(",") for (roles,) in rows)

    def verify_password(self, name: str, password: str) -> Principal | None:
        """The user when the password is right and the account enabled; slow on purpose."""
        if not _plain(name, password):
            return None
        with self._db() as db:
            row = db.execute(
                "SELECT password_hash, roles, disabled FROM users WHERE name = ?", (name,)
            ).fetchone()
        try:
            # An unknown name costs the same time as a wrong password: no user enumeration.
            _hasher.verify(row[0] if row else _DUMMY_HASH, password[:1024])
        except (VerificationError, InvalidHashError):
            return None
        if row is None or row[2]:
            return None
        return Principal(name=name, kind="user", roles=frozenset(row[1].split(",")))

    # API keys ----------------------------------------------------------------------------

    def create_key(self, name: str, roles: frozenset[str]) -> tuple[str, str]:
        """A new key for a system: (key id, the secret token, shown only now)."""
        _check_name(name)
        key_id = secrets.token_hex(4)
        secret = secrets.token_urlsafe(32)
        with self._db() as db:
            db.execute(
                "INSERT INTO api_keys (key_id, name, secret_hash, roles, created_at) "
                "VALUES (?,?,?,?,?)",
                (key_id, name, _digest(secret), _roles_text(roles), datetime.now(UTC).isoformat()),
            )
        return key_id, f"{KEY_PREFIX}_{key_id}_{secret}"

    def revoke_key(self, key_id: str) -> None:
        with self._db() as db:
            revoked = db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
                (datetime.now(UTC).isoformat(), key_id),
            )
            if revoked.rowcount == 0:
                raise AccessError(f"no active key {key_id!r}")

    def keys(self) -> list[dict[str, object]]:
        with self._db() as db:
            rows = db.execute(
                "SELECT key_id, name, roles, created_at, revoked_at FROM api_keys "
                "ORDER BY created_at"
            ).fetchall()
        return [
            {"key_id": k, "name": n, "roles": r.split(","), "created_at": c, "revoked_at": v}
            for k, n, r, c, v in rows
        ]

    def verify_key(self, token: str) -> Principal | None:
        prefix, _, rest = token.partition("_")
        key_id, _, secret = rest.partition("_")
        if prefix != KEY_PREFIX or not key_id or not secret or not _plain(key_id):
            return None
        with self._db() as db:
            row = db.execute(
                "SELECT name, secret_hash, roles FROM api_keys "
                "WHERE key_id = ? AND revoked_at IS NULL",
                (key_id,),
            ).fetchone()
        if row is None or not hmac.compare_digest(row[1], _digest(secret)):
            return None
        return Principal(name=row[0], kind="key", roles=frozenset(row[2].split(",")))

    # sessions ----------------------------------------------------------------------------

    def open_session(self, principal: Principal, lifetime: timedelta) -> tuple[str, Session]:
        """A new login: (the cookie's token, the session with its CSRF token)."""
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        with self._db() as db:
            db.execute("DELETE FROM sessions WHERE expires_at < ?", (now.isoformat(),))
            db.execute(
                "INSERT INTO sessions (token_hash, user, csrf, created_at, expires_at) "
                "VALUES (?,?,?,?,?)",
                (
                    _digest(token),
                    principal.name,
                    csrf,
                    now.isoformat(),
                    (now + lifetime).isoformat(),
                ),
            )
        return token, Session(principal=principal, csrf=csrf, expires_at=now + lifetime)

    def session(self, token: str) -> Session | None:
        """The live session of a cookie; None once expired, logged out or the user disabled."""
        if not _plain(token):
            return None
        with self._db() as db:
            row = db.execute(
                "SELECT s.user, s.csrf, s.expires_at, u.roles FROM sessions s "
                "JOIN users u ON u.name = s.user "
                "WHERE s.token_hash = ? AND u.disabled = 0",
                (_digest(token),),
            ).fetchone()
        if row is None:
            return None
        expires = datetime.fromisoformat(row[2])
        if expires <= datetime.now(UTC):
            return None
        # Roles are read live, so a change of roles applies to sessions already open.
        principal = Principal(name=row[0], kind="user", roles=frozenset(row[3].split(",")))
        return Session(principal=principal, csrf=row[1], expires_at=expires)

    def close_session(self, token: str) -> None:
        with self._db() as db:
            db.execute("DELETE FROM sessions WHERE token_hash = ?", (_digest(token),))

    def end_sessions(self, name: str) -> None:
        with self._db() as db:
            db.execute("DELETE FROM sessions WHERE user = ?", (name,))
