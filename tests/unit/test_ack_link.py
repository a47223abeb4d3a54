"""The acknowledge link of a notification: signed over incident and expiry, refused when off."""

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

from alerting.ack_link import ack_link, ack_token, refusal

KEY = b"test-key"
NOW = datetime(2026, 1, 15, 8, 0, tzinfo=UTC)
DAY = timedelta(hours=24)


def parts(link: str) -> tuple[str, str, str]:
    url = urlsplit(link)
    query = parse_qs(url.query)
    return url.path, query["token"][0], query["expires"][0]


def test_the_link_carries_its_expiry_and_works_until_then() -> None:
    """A day's link opens the incident's page for a day, not a second longer."""
    path, token, expires = parts(ack_link("https://o.example/", KEY, "INC-7", NOW, DAY))
    assert path == "/v1/incidents/INC-7/acknowledge"
    assert int(expires) == int((NOW + DAY).timestamp())
    assert refusal(KEY, "INC-7", token, expires, NOW + DAY - timedelta(seconds=1)) is None
    reason = refusal(KEY, "INC-7", token, expires, NOW + DAY)
    assert reason is not None and "expired at 2026-01-16 08:00 UTC" in reason


def test_a_changed_expiry_incident_or_key_is_refused() -> None:
    """The expiry is signed: moving it, or using the token for another incident, fails."""
    _, token, expires = parts(ack_link("https://o.example", KEY, "INC-7", NOW, DAY))
    later = str(int(expires) + 3600)
    assert refusal(KEY, "INC-7", token, later, NOW) == (
        "the link's token is not valid for this incident"
    )
    assert refusal(KEY, "INC-8", token, expires, NOW) is not None
    assert refusal(b"other", "INC-7", token, expires, NOW) is not None


def test_an_old_link_without_expiry_and_odd_input_are_refused_with_a_reason() -> None:
    """Links from before expiries, garbage expiries and non-ASCII tokens: a reason, no crash."""
    token = ack_token(KEY, "INC-7", 0)
    assert "no expiry" in (refusal(KEY, "INC-7", token, "", NOW) or "")
    for expires in ("soon", "-1", "1e9", "9" * 13, "\uff11\uff12"):  # the last: full-width 12
        assert refusal(KEY, "INC-7", token, expires, NOW) == "the link's expiry is not valid"
    assert refusal(KEY, "INC-\ud800", "tøken\ud800", "1", NOW) is not None
