"""Access control: roles and permissions, the SQLite access store, rate limits, the login
redirect and secret comparison helpers, and the `outage users` / `outage keys` commands."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from access.limits import Backoff, LoginThrottle, TokenBuckets
from access.roles import GRANTS, ROLES, Permission, parse_roles, permits, roles_with
from access.store import AccessError, AccessStore, Principal
from cli.main import main
from streams.account import safe_next
from streams.web import same_secret

PASSWORD = "correct horse battery"
OTHER_PASSWORD = "another long secret"

# The policy, written out independently of GRANTS: role -> permissions it must grant.
P = Permission
EXPECTED_POLICY: dict[str, set[Permission]] = {
    "agent": {P.LOOKUP, P.REPORT_CALL},
    "shift_lead": {P.LOOKUP, P.REPORT_CALL, P.ACT, P.SILENCE, P.SUPERVISE},
    "operations": {P.LOOKUP, P.INGEST_SCADA, P.TOPOLOGY},
    "admin": {P.MANAGE_ACCESS},
}


@pytest.fixture
def store(tmp_path: Path) -> AccessStore:
    """A fresh access store in a temporary SQLite file."""
    return AccessStore(tmp_path / "access.sqlite3")


# roles -------------------------------------------------------------------------------------


def test_roles_are_the_four_known_ones() -> None:
    """The roles are exactly agent, shift_lead, operations and admin, each with a grant."""
    assert set(ROLES) == set(EXPECTED_POLICY)
    assert set(GRANTS) == set(EXPECTED_POLICY)


@pytest.mark.parametrize("role", sorted(EXPECTED_POLICY))
@pytest.mark.parametrize("permission", list(Permission))
def test_permits_matches_the_policy_table(role: str, permission: Permission) -> None:
    """A single role permits a permission exactly when the written-out policy says so."""
    assert permits(frozenset({role}), permission) is (permission in EXPECTED_POLICY[role])


def test_policy_highlights() -> None:
    """Admin cannot look up or act, agent cannot act, operations cannot report or supervise."""
    admin, agent, ops = frozenset({"admin"}), frozenset({"agent"}), frozenset({"operations"})
    assert not permits(admin, P.LOOKUP)
    assert not permits(admin, P.ACT)
    assert not permits(agent, P.ACT)
    assert not permits(ops, P.REPORT_CALL)
    assert not permits(ops, P.SUPERVISE)
    lead = EXPECTED_POLICY["shift_lead"]
    assert lead == EXPECTED_POLICY["agent"] | {P.ACT, P.SILENCE, P.SUPERVISE}
    assert all(permits(frozenset({"shift_lead"}), p) for p in lead)


def test_permits_combines_roles_and_ignores_unknown_names() -> None:
    """Several roles grant the union; no roles or unknown role names grant nothing."""
    both = frozenset({"agent", "operations"})
    assert permits(both, P.REPORT_CALL)
    assert permits(both, P.TOPOLOGY)
    assert not permits(both, P.ACT)
    for permission in Permission:
        assert not permits(frozenset(), permission)
        assert not permits(frozenset({"root", "superuser"}), permission)


def test_roles_with_lists_granting_roles_in_role_order() -> None:
    """roles_with gives the roles granting a permission, in ROLES order."""
    for permission in Permission:
        expected = [r for r in ROLES if permission in EXPECTED_POLICY[r]]
        assert roles_with(permission) == expected
    assert roles_with(P.LOOKUP) == ["agent", "shift_lead", "operations"]
    assert roles_with(P.ACT) == ["shift_lead"]
    assert roles_with(P.MANAGE_ACCESS) == ["admin"]


def test_parse_roles_accepts_a_comma_list_with_spaces() -> None:
    """'agent, shift_lead' parses to both roles; blanks and duplicates are ignored."""
    assert parse_roles("agent, shift_lead") == frozenset({"agent", "shift_lead"})
    assert parse_roles(" admin ,,admin, ") == frozenset({"admin"})


@pytest.mark.parametrize("text", ["", " , ", "root", "agent,root", "Agent"])
def test_parse_roles_refuses_unknown_or_empty_listing_the_roles(text: str) -> None:
    """An empty list or an unknown name raises ValueError whose message lists every role."""
    with pytest.raises(ValueError) as caught:
        parse_roles(text)
    message = str(caught.value)
    for role in ROLES:
        assert role in message


# store: users ------------------------------------------------------------------------------


def test_verify_password_right_wrong_and_unknown(store: AccessStore) -> None:
    """The right password gives the user's principal; a wrong one or unknown user gives None."""
    store.add_user("anna", PASSWORD, frozenset({"agent", "shift_lead"}))
    principal = store.verify_password("anna", PASSWORD)
    assert principal == Principal(
        name="anna", kind="user", roles=frozenset({"agent", "shift_lead"})
    )
    assert store.verify_password("anna", OTHER_PASSWORD) is None
    assert store.verify_password("bob", PASSWORD) is None
    assert store.verify_password("anna", "\ud800" + PASSWORD) is None
    assert store.verify_password("\udcff", PASSWORD) is None


def test_password_is_stored_as_argon2id_and_never_in_plain(store: AccessStore) -> None:
    """The sqlite file holds an $argon2id$ hash and not the password's bytes."""
    store.add_user("anna", PASSWORD, frozenset({"agent"}))
    data = b"".join(p.read_bytes() for p in store.path.parent.glob("access.sqlite3*"))
    assert b"$argon2id$" in data
    assert PASSWORD.encode() not in data
    [listed] = store.users()
    assert (listed["name"], listed["roles"], listed["disabled"]) == ("anna", ["agent"], False)
    assert isinstance(listed["created_at"], str)
    assert datetime.fromisoformat(listed["created_at"]).tzinfo is not None


def test_add_user_refuses_duplicates_short_passwords_bad_names_and_roles(
    store: AccessStore,
) -> None:
    """A second user of one name, a short password, a bad name or bad roles raise AccessError."""
    store.add_user("anna", PASSWORD, frozenset({"agent"}))
    with pytest.raises(AccessError, match="exists already"):
        store.add_user("anna", OTHER_PASSWORD, frozenset({"agent"}))
    with pytest.raises(AccessError, match="at least 10"):
        store.add_user("bob", "short", frozenset({"agent"}))
    with pytest.raises(AccessError, match="at most 1024"):
        store.add_user("bob", "x" * 1025, frozenset({"agent"}))
    for name in ["", "-anna", ".anna", "an na", "anna/..", "a" * 65, "ann\u00e4"]:
        with pytest.raises(AccessError, match="must be 1-64"):
            store.add_user(name, PASSWORD, frozenset({"agent"}))
    with pytest.raises(AccessError, match="roles must be"):
        store.add_user("carl", PASSWORD, frozenset({"root"}))
    with pytest.raises(AccessError, match="roles must be"):
        store.add_user("carl", PASSWORD, frozenset())
    assert [u["name"] for u in store.users()] == ["anna"]


def test_disabled_user_cannot_log_in_and_its_sessions_end(store: AccessStore) -> None:
    """Disabling ends open sessions and refuses the right password; enabling lets in again."""
    store.add_user("anna", PASSWORD, frozenset({"agent"}))
    principal = store.verify_password("anna", PASSWORD)
    assert principal is not None
    token, _ = store.open_session(principal, timedelta(hours=1))
    store.set_disabled("anna", True)
    assert store.verify_password("anna", PASSWORD) is None
    assert store.session(token) is None
    assert store.users()[0]["disabled"] is True
    store.set_disabled("anna", False)
    assert store.verify_password("anna", PASSWORD) == principal
    assert store.session(token) is None  # the ended session does not come back


def test_set_password_changes_it_and_ends_sessions(store: AccessStore) -> None:
    """After set_password the old password fails, the new works, old sessions are gone."""
    store.add_user("anna", PASSWORD, frozenset({"agent"}))
    anna = Principal("anna", "user", frozenset({"agent"}))
    token, _ = store.open_session(anna, timedelta(hours=1))
    store.set_password("anna", OTHER_PASSWORD)
    assert store.session(token) is None
    assert store.verify_password("anna", PASSWORD) is None
    assert store.verify_password("anna", OTHER_PASSWORD) == anna
    with pytest.raises(AccessError, match="at least 10"):
        store.set_password("anna", "short")
    with pytest.raises(AccessError, match="no user"):
        store.set_password("nobody", OTHER_PASSWORD)


def test_set_roles_applies_to_open_sessions(store: AccessStore) -> None:
    """A change of roles shows in the principal of a session opened before it."""
    store.add_user("anna", PASSWORD, frozenset({"agent"}))
    token, opened = store.open_session(
        Principal("anna", "user", frozenset({"agent"})), timedelta(hours=1)
    )
    store.set_roles("anna", frozenset({"shift_lead", "admin"}))
    session = store.session(token)
    assert session is not None
    assert session.principal.roles == frozenset({"shift_lead", "admin"})
    assert session.csrf == opened.csrf
    assert store.users()[0]["roles"] == ["shift_lead", "admin"]
    with pytest.raises(AccessError, match="roles must be"):
        store.set_roles("anna", frozenset({"root"}))
    with pytest.raises(AccessError, match="no user"):
        store.set_roles("nobody", frozenset({"agent"}))
    with pytest.raises(AccessError, match="no user"):
        store.set_disabled("nobody", True)


def test_remove_user(store: AccessStore) -> None:
    """A removed user cannot log in, its sessions end, and removing it again is refused."""
    store.add_user("anna", PASSWORD, frozenset({"agent"}))
    token, _ = store.open_session(
        Principal("anna", "user", frozenset({"agent"})), timedelta(hours=1)
    )
    store.remove_user("anna")
    assert store.users() == []
    assert store.verify_password("anna", PASSWORD) is None
    assert store.session(token) is None
    with pytest.raises(AccessError, match="no user 'anna'"):
        store.remove_user("anna")


def test_has_admin_counts_enabled_admins_only(store: AccessStore) -> None:
    """has_admin is true only while an enabled user holds the admin role."""
    assert not store.has_admin()
    store.add_user("anna", PASSWORD, frozenset({"agent"}))
    assert not store.has_admin()
    store.set_roles("anna", frozenset({"agent", "admin"}))
    assert store.has_admin()
    store.set_disabled("anna", True)
    assert not store.has_admin()


def test_store_file_is_private(tmp_path: Path) -> None:
    """The access file is created (with its folder) readable by its owner only."""
    store = AccessStore(tmp_path / "sub" / "access.sqlite3")
    assert store.path.stat().st_mode & 0o777 == 0o600


# store: API keys ---------------------------------------------------------------------------


def test_create_key_returns_a_token_that_verifies(store: AccessStore) -> None:
    """create_key gives (id, 'ock_<id>_<secret>'); verify_key gives the key's principal."""
    key_id, token = store.create_key("crm", frozenset({"agent"}))
    prefix, _, rest = token.partition("_")
    assert prefix == "ock"
    assert rest.startswith(f"{key_id}_")
    secret = rest[len(key_id) + 1 :]
    assert len(secret) >= 32
    principal = store.verify_key(token)
    assert principal == Principal(name="crm", kind="key", roles=frozenset({"agent"}))
    data = b"".join(p.read_bytes() for p in store.path.parent.glob("access.sqlite3*"))
    assert secret.encode() not in data
    assert token.encode() not in data
    [listed] = store.keys()
    assert listed["key_id"] == key_id
    assert listed["name"] == "crm"
    assert listed["roles"] == ["agent"]
    assert listed["revoked_at"] is None


def test_create_key_refuses_bad_names_and_roles(store: AccessStore) -> None:
    """A key needs a valid system name and known, non-empty roles."""
    with pytest.raises(AccessError, match="must be 1-64"):
        store.create_key("bad name", frozenset({"agent"}))
    with pytest.raises(AccessError, match="roles must be"):
        store.create_key("crm", frozenset({"root"}))
    with pytest.raises(AccessError, match="roles must be"):
        store.create_key("crm", frozenset())
    assert store.keys() == []


def test_verify_key_refuses_tampered_unknown_and_garbage(store: AccessStore) -> None:
    """A changed secret, an unknown id, garbage or lone surrogates verify to None."""
    key_id, token = store.create_key("crm", frozenset({"agent"}))
    secret = token[len(f"ock_{key_id}_") :]
    flipped = ("A" if secret[0] != "A" else "B") + secret[1:]
    for bad in [
        f"ock_{key_id}_{flipped}",
        f"ock_{key_id}_{secret}x",
        f"ock_{key_id}_{secret[:-1]}",
        f"ock_00000000_{secret}",
        f"xyz_{key_id}_{secret}",
        f"ock_{key_id}",
        f"ock_{key_id}_",
        f"ock__{secret}",
        "",
        "ock",
        "garbage",
        "Bearer " + token,
        f"ock_{key_id}_\ud800",
        f"ock_\ud800_{secret}",
        "\udcff",
    ]:
        assert store.verify_key(bad) is None, bad
    assert store.verify_key(token) is not None


def test_keys_are_independent(store: AccessStore) -> None:
    """Two keys of one system have their own ids and tokens; revoking one keeps the other."""
    first_id, first = store.create_key("scada-north", frozenset({"operations"}))
    second_id, second = store.create_key("scada-north", frozenset({"operations"}))
    assert first_id != second_id
    store.revoke_key(first_id)
    assert store.verify_key(first) is None
    assert store.verify_key(second) == Principal("scada-north", "key", frozenset({"operations"}))


def test_revoke_key(store: AccessStore) -> None:
    """A revoked key verifies to None, is listed as revoked; revoking twice is refused."""
    key_id, token = store.create_key("crm", frozenset({"agent"}))
    store.revoke_key(key_id)
    assert store.verify_key(token) is None
    [listed] = store.keys()
    assert isinstance(listed["revoked_at"], str)
    with pytest.raises(AccessError, match="no active key"):
        store.revoke_key(key_id)
    with pytest.raises(AccessError, match="no active key"):
        store.revoke_key("deadbeef")


# store: sessions ---------------------------------------------------------------------------


def test_session_open_read_close(store: AccessStore) -> None:
    """An open session is found by its token with its CSRF token until it is closed."""
    store.add_user("anna", PASSWORD, frozenset({"agent"}))
    anna = Principal("anna", "user", frozenset({"agent"}))
    before = datetime.now(UTC)
    token, opened = store.open_session(anna, timedelta(hours=8))
    assert opened.principal == anna
    assert token != opened.csrf
    assert before + timedelta(hours=8) <= opened.expires_at
    assert opened.expires_at <= datetime.now(UTC) + timedelta(hours=8)
    found = store.session(token)
    assert found == opened
    data = b"".join(p.read_bytes() for p in store.path.parent.glob("access.sqlite3*"))
    assert token.encode() not in data
    store.close_session(token)
    assert store.session(token) is None
    store.close_session(token)  # closing twice is harmless


def test_session_tokens_are_independent(store: AccessStore) -> None:
    """Two sessions of one user differ; closing one leaves the other open."""
    store.add_user("anna", PASSWORD, frozenset({"agent"}))
    anna = Principal("anna", "user", frozenset({"agent"}))
    first, first_session = store.open_session(anna, timedelta(hours=1))
    second, second_session = store.open_session(anna, timedelta(hours=1))
    assert first != second
    assert first_session.csrf != second_session.csrf
    store.close_session(first)
    assert store.session(first) is None
    assert store.session(second) == second_session


@pytest.mark.parametrize("lifetime", [timedelta(seconds=-1), timedelta(0)])
def test_expired_session_is_none(store: AccessStore, lifetime: timedelta) -> None:
    """A session whose expiry is not in the future is not found."""
    store.add_user("anna", PASSWORD, frozenset({"agent"}))
    token, _ = store.open_session(Principal("anna", "user", frozenset({"agent"})), lifetime)
    assert store.session(token) is None


def test_unknown_or_hostile_session_tokens_are_none(store: AccessStore) -> None:
    """Unknown, empty and lone-surrogate tokens give None, and closing them does not raise."""
    for token in ["", "nope", "\ud800", "x" * 5000]:
        assert store.session(token) is None
        store.close_session(token)


def test_session_of_an_unknown_user_is_none(store: AccessStore) -> None:
    """A session for a name with no user row (e.g. a key's name) is not found."""
    token, _ = store.open_session(Principal("crm", "key", frozenset({"agent"})), timedelta(hours=1))
    assert store.session(token) is None


def test_principal_label() -> None:
    """A user's label is its name; a key's label is 'key:<name>'."""
    assert Principal("anna", "user", frozenset({"agent"})).label == "anna"
    assert Principal("crm", "key", frozenset({"agent"})).label == "key:crm"


# limits ------------------------------------------------------------------------------------


def test_token_bucket_allows_burst_then_gives_the_wait() -> None:
    """`burst` requests at one instant pass; the next gets the seconds until a token is back."""
    buckets = TokenBuckets(rate=2.0, burst=3)
    assert [buckets.take("crm", 100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("crm", 100.0) == pytest.approx(0.5)
    assert buckets.take("crm", 100.25) == pytest.approx(0.25)


def test_token_bucket_refills_at_rate_up_to_burst() -> None:
    """Tokens come back at `rate` per second and never pile up beyond `burst`."""
    buckets = TokenBuckets(rate=2.0, burst=3)
    for _ in range(3):
        buckets.take("crm", 0.0)
    assert buckets.take("crm", 0.5) == 0.0  # one token after 0.5 s at 2/s
    assert buckets.take("crm", 0.5) > 0.0
    assert buckets.take("crm", 1.0) == 0.0
    # a long pause refills to `burst` only
    assert [buckets.take("crm", 1000.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("crm", 1000.0) == pytest.approx(0.5)


def test_token_buckets_keys_are_independent() -> None:
    """Emptying one key's bucket leaves another key's full."""
    buckets = TokenBuckets(rate=1.0, burst=2)
    buckets.take("a", 0.0)
    buckets.take("a", 0.0)
    assert buckets.take("a", 0.0) == pytest.approx(1.0)
    assert buckets.take("b", 0.0) == 0.0
    assert buckets.take("b", 0.0) == 0.0
    assert buckets.take("b", 0.0) > 0.0


def test_token_bucket_wait_spends_nothing() -> None:
    """`wait` says how long until a token is there without taking one."""
    buckets = TokenBuckets(rate=2.0, burst=1)
    assert buckets.wait("x", 0.0) == 0.0
    assert buckets.wait("x", 0.0) == 0.0  # still there: nothing was spent
    buckets.take("x", 0.0)
    assert buckets.wait("x", 0.0) == pytest.approx(0.5)
    assert buckets.wait("x", 0.25) == pytest.approx(0.25)
    assert buckets.wait("x", 0.5) == 0.0


@pytest.mark.parametrize(
    ("failures", "now", "wait"),
    [
        (2, 1.0, 0.0),  # within `free`: no wait
        (3, 2.0, 1.0),  # the first failure past `free`: 1 s after the latest one
        (3, 3.5, 0.0),  # ... and then it has passed
        (4, 3.0, 2.0),  # doubling
        (5, 4.0, 4.0),
        (9, 8.0, 60.0),  # capped at `most`, never a lock-out
        (2000, 1999.0, 60.0),  # no overflow however many
    ],
)
def test_backoff_doubles_the_wait_past_free_up_to_most(
    failures: int, now: float, wait: float
) -> None:
    """After `free` failures a try waits 1, 2, 4 ... s after the latest failure, up to `most`."""
    backoff = Backoff(free=3, most=60.0, forget=1e9)
    for t in range(failures):
        backoff.failed("anna", float(t))
    assert backoff.wait("anna", now) == pytest.approx(wait)
    assert backoff.wait("bob", now) == 0.0


def test_backoff_forgets_a_quiet_key_and_forgives_on_request() -> None:
    """A key quiet for `forget` seconds starts again; `forgive` takes failures off."""
    backoff = Backoff(free=1, most=300.0, forget=100.0)
    for t in (0.0, 1.0, 2.0):
        backoff.failed("anna", t)
    assert backoff.wait("anna", 2.0) == pytest.approx(4.0)  # the third: 4 s
    backoff.failed("anna", 102.0)  # the old ones are forgotten: the first again, 1 s
    assert backoff.wait("anna", 102.0) == pytest.approx(1.0)
    backoff.failed("anna", 103.0)
    backoff.forgive("anna", 1)
    assert backoff.wait("anna", 103.0) == pytest.approx(1.0)  # one left
    backoff.forgive("anna")
    assert backoff.wait("anna", 103.0) == 0.0


def test_backoff_remembers_a_bounded_number_of_keys() -> None:
    """A spray of names cannot grow memory without bound: the oldest keys go first."""
    backoff = Backoff(free=0, keys=3, forget=1e9)
    for n in range(10):
        backoff.failed(f"name-{n}", 0.0)
    assert [backoff.wait(f"name-{n}", 0.5) > 0.0 for n in range(10)] == [False] * 7 + [True] * 3


@pytest.mark.parametrize(
    ("limits", "failures", "ask", "expected"),
    [
        # per name: two addresses failed for admin; a third address waits for admin only
        ((2, 100, 600), [("admin", "a1"), ("admin", "a2")], ("admin", "a3"), (0.5, "name")),
        ((2, 100, 600), [("admin", "a1"), ("admin", "a2")], ("anna", "a3"), (0.0, None)),
        # per address: a spray of names from one address waits there, not elsewhere
        ((100, 2, 600), [("x1", "a9"), ("x2", "a9")], ("x3", "a9"), (0.5, "address")),
        ((100, 2, 600), [("x1", "a9"), ("x2", "a9")], ("x3", "a8"), (0.0, None)),
        # across the service: 2 a minute, 2 at once; then everyone waits for the next token
        ((100, 100, 2), [("x1", "a1"), ("x2", "a2")], ("new", "a3"), (29.5, "service")),
    ],
)
def test_login_throttle_limits_each_of_name_address_and_service(
    limits: tuple[int, int, float],
    failures: list[tuple[str, str]],
    ask: tuple[str, str],
    expected: tuple[float, str | None],
) -> None:
    """Each limit applies on its own, and the answer names whose wait it is."""
    throttle = LoginThrottle.standard(*limits)
    for name, address in failures:
        throttle.failed(name, address, 0.0)
    seconds, whose = throttle.wait(*ask, 0.5)
    assert seconds == pytest.approx(expected[0])
    if expected[1] is not None:
        assert whose == expected[1]


def test_login_throttle_success_clears_the_name_and_forgives_one_address_failure() -> None:
    """The right password clears its name's wait; the address keeps all but one failure."""
    throttle = LoginThrottle.standard(per_name=1, per_address=2, per_minute=600)
    for name in ("anna", "x", "y"):
        throttle.failed(name, "10.0.0.1", 0.0)
    throttle.succeeded("anna", "10.0.0.1")
    assert throttle.wait("anna", "10.0.0.2", 0.0)[0] == 0.0
    assert throttle.wait("z", "10.0.0.1", 0.0) == (pytest.approx(1.0), "address")  # 2 left
    throttle.succeeded("x", "10.0.0.1")
    assert throttle.wait("z", "10.0.0.1", 0.0)[0] == 0.0


# safe_next and same_secret -----------------------------------------------------------------


@pytest.mark.parametrize("target", ["/board?x=1", "/", "/incidents/abc#top"])
def test_safe_next_keeps_local_paths(target: str) -> None:
    """A path on this site is kept as it is."""
    assert safe_next(target) == target


@pytest.mark.parametrize(
    "target",
    [
        None,
        "",
        "https://evil",
        "//evil",
        "/\\evil",
        "\\\\evil",
        "board",
        "javascript:x",
        "/\t/evil.example",
        "/\n/evil.example",
        "/\r/evil.example",
    ],
)
def test_safe_next_sends_anything_else_home(target: str | None) -> None:
    """No target, another site, a backslash or a tab/newline trick (browsers drop them) -> '/'."""
    assert safe_next(target) == "/"


def test_same_secret() -> None:
    """Equal strings compare true, others false; non-ASCII and lone surrogates do not raise."""
    assert same_secret("abc", "abc")
    assert not same_secret("abc", "abd")
    assert not same_secret("", "abc")
    assert not same_secret("abc", "")
    assert same_secret("", "")
    assert same_secret("grüße✓", "grüße✓")
    assert not same_secret("grüße", "grusse")
    assert not same_secret("\ud800", "abc")
    assert not same_secret("abc", "\udcff")
    assert same_secret("\ud800x", "\ud800x")


# CLI ---------------------------------------------------------------------------------------


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """OUTAGE_DATA_DIR points at a temporary folder, with no OUTAGE_ACCESS_DB override."""
    monkeypatch.setenv("OUTAGE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("OUTAGE_ACCESS_DB", raising=False)
    return tmp_path


def stdin(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(text))


def test_cli_users_round_trip(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """users add/list/passwd/roles/disable/enable/remove each exit 0 and change the file."""
    store = AccessStore(data_dir / "access.sqlite3")

    stdin(monkeypatch, PASSWORD + "\n")
    assert main(["users", "add", "anna", "--roles", "agent", "--password-stdin"]) == 0
    assert "user anna added with roles agent" in capsys.readouterr().out
    assert store.verify_password("anna", PASSWORD) is not None

    assert main(["users", "list"]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert (listed["name"], listed["roles"], listed["disabled"]) == ("anna", ["agent"], False)

    stdin(monkeypatch, OTHER_PASSWORD + "\n")
    assert main(["users", "passwd", "anna", "--password-stdin"]) == 0
    assert "password of anna changed" in capsys.readouterr().out
    assert store.verify_password("anna", OTHER_PASSWORD) is not None
    assert store.verify_password("anna", PASSWORD) is None

    assert main(["users", "roles", "anna", "agent, shift_lead"]) == 0
    assert "anna now has agent, shift_lead" in capsys.readouterr().out
    assert store.users()[0]["roles"] == ["agent", "shift_lead"]

    assert main(["users", "disable", "anna"]) == 0
    assert "anna disabled" in capsys.readouterr().out
    assert store.users()[0]["disabled"] is True
    assert main(["users", "enable", "anna"]) == 0
    assert "anna enabled" in capsys.readouterr().out
    assert store.users()[0]["disabled"] is False

    assert main(["users", "remove", "anna"]) == 0
    assert "user anna removed" in capsys.readouterr().out
    assert store.users() == []


def test_cli_generate_prints_a_working_password(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--generate prints a random password that then logs in (for add and passwd)."""
    store = AccessStore(data_dir / "access.sqlite3")
    assert main(["users", "add", "root", "--roles", "admin", "--generate"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].startswith("password: ")
    first = lines[-1].removeprefix("password: ")
    assert len(first) >= 10
    assert store.verify_password("root", first) is not None
    assert store.has_admin()

    assert main(["users", "passwd", "root", "--generate"]) == 0
    second = capsys.readouterr().out.splitlines()[-1].removeprefix("password: ")
    assert second != first
    assert store.verify_password("root", second) is not None


def test_cli_keys_round_trip(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """keys create prints a token verify_key accepts; list shows it; revoke ends it."""
    store = AccessStore(data_dir / "access.sqlite3")
    assert main(["keys", "create", "crm", "--roles", "agent"]) == 0
    out = capsys.readouterr().out.splitlines()
    token = out[-1]
    assert token.startswith("ock_")
    assert store.verify_key(token) == Principal("crm", "key", frozenset({"agent"}))
    key_id = token.split("_")[1]
    assert out[0].startswith(f"key {key_id} for crm (agent)")

    assert main(["keys", "list"]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert (listed["key_id"], listed["name"], listed["revoked_at"]) == (key_id, "crm", None)
    assert token not in json.dumps(listed)

    assert main(["keys", "revoke", key_id]) == 0
    assert f"key {key_id} revoked" in capsys.readouterr().out
    assert store.verify_key(token) is None

    assert main(["keys", "revoke", key_id]) == 2
    assert "error: no active key" in capsys.readouterr().err


def test_cli_access_db_setting_overrides_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """OUTAGE_ACCESS_DB names the access file instead of DATA_DIR/access.sqlite3."""
    monkeypatch.setenv("OUTAGE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("OUTAGE_ACCESS_DB", str(tmp_path / "elsewhere.sqlite3"))
    assert main(["keys", "create", "crm", "--roles", "operations"]) == 0
    token = capsys.readouterr().out.splitlines()[-1]
    assert AccessStore(tmp_path / "elsewhere.sqlite3").verify_key(token) is not None
    assert not (tmp_path / "data" / "access.sqlite3").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["users", "add", "anna", "--roles", "root", "--generate"], "unknown role 'root'"),
        (["users", "add", "anna", "--roles", "", "--generate"], "give at least one role"),
        (["users", "roles", "anna", "root"], "unknown role 'root'"),
        (["keys", "create", "crm", "--roles", "agent,root"], "unknown role 'root'"),
        (["users", "passwd", "nobody", "--generate"], "no user 'nobody'"),
        (["users", "roles", "nobody", "agent"], "no user 'nobody'"),
        (["users", "disable", "nobody"], "no user 'nobody'"),
        (["users", "enable", "nobody"], "no user 'nobody'"),
        (["users", "remove", "nobody"], "no user 'nobody'"),
        (["users", "add", "bad name", "--roles", "agent", "--generate"], "must be 1-64"),
        (["keys", "create", "bad name", "--roles", "agent"], "must be 1-64"),
        (["keys", "revoke", "deadbeef"], "no active key 'deadbeef'"),
    ],
)
def test_cli_errors_exit_2_with_a_message(
    data_dir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    """Unknown roles, unknown users or keys and bad names exit 2 with 'error: ...' on stderr."""
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ")
    assert message in captured.err
    assert AccessStore(data_dir / "access.sqlite3").users() == []


def test_cli_short_password_exits_2(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A password under 10 characters from stdin is refused for add and passwd (exit 2)."""
    stdin(monkeypatch, "short\n")
    assert main(["users", "add", "anna", "--roles", "agent", "--password-stdin"]) == 2
    assert "at least 10 characters" in capsys.readouterr().err
    store = AccessStore(data_dir / "access.sqlite3")
    assert store.users() == []

    assert main(["users", "add", "anna", "--roles", "agent", "--generate"]) == 0
    capsys.readouterr()
    stdin(monkeypatch, "short\n")
    assert main(["users", "passwd", "anna", "--password-stdin"]) == 2
    assert "at least 10 characters" in capsys.readouterr().err


def test_cli_duplicate_user_exits_2(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Adding a user that exists exits 2 and keeps the first one."""
    assert main(["users", "add", "anna", "--roles", "agent", "--generate"]) == 0
    assert main(["users", "add", "anna", "--roles", "admin", "--generate"]) == 2
    assert "exists already" in capsys.readouterr().err
    assert AccessStore(data_dir / "access.sqlite3").users()[0]["roles"] == ["agent"]
