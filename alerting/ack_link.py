"""The one-click acknowledge link of a notification: an HMAC over the incident and an expiry.

The link is public, so its token is the credential; the expiry is in the link and signed with
it, so a forwarded or archived mail stops working after the lifetime. Opening the link only
shows a page; the page's button acknowledges (mail scanners follow GETs). Pure: `now` is given.
"""

import hashlib
import hmac
import re
from datetime import datetime, timedelta
from urllib.parse import quote, urlencode

EXPIRES = re.compile(r"^[0-9]{1,12}$")  # unix seconds; 12 digits is past the year 30000


def ack_token(key: bytes, incident_id: str, expires: int) -> str:
    """The token of an incident's acknowledge link valid until `expires` (unix seconds)."""
    message = f"ack:{incident_id}:{expires}".encode("utf-8", "surrogatepass")  # odd ids from URLs
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:32]


def ack_link(
    public_url: str, key: bytes, incident_id: str, now: datetime, lifetime: timedelta
) -> str:
    """The link a notification carries: it opens the acknowledge page until now + lifetime."""
    expires = int((now + lifetime).timestamp())
    query = urlencode({"expires": expires, "token": ack_token(key, incident_id, expires)})
    path = f"/v1/incidents/{quote(incident_id, safe='')}/acknowledge"
    return f"{public_url.rstrip('/')}{path}?{query}"


def refusal(key: bytes, incident_id: str, token: str, expires: str, now: datetime) -> str | None:
    """Why a link's token and expiry do not let it acknowledge this incident, or None if they do."""
    if not expires:
        return "the link has no expiry (it is from an older notification): use the board"
    if not EXPIRES.match(expires):
        return "the link's expiry is not valid"
    expected = ack_token(key, incident_id, int(expires))
    sent = token.encode("utf-8", "surrogatepass")
    if not hmac.compare_digest(sent, expected.encode()):
        return "the link's token is not valid for this incident"
    if now.timestamp() >= int(expires):
        at = datetime.fromtimestamp(int(expires), now.tzinfo).strftime("%Y-%m-%d %H:%M %Z")
        return f"the link expired at {at}: acknowledge the incident on the board"
    return None
