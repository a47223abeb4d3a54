"""The page a notification's acknowledge link opens, and the pages its button answers with.

Plain HTML with a form and /static/base.css: no script, so the CSP `default-src 'self';
form-action 'self'` holds. Opening the link changes nothing (mail scanners follow links);
only the button's POST acknowledges.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import quote

from aiohttp import web

if TYPE_CHECKING:
    from projections.incidents import IncidentView


def wants_html(request: web.Request) -> bool:
    """A browser (the link, the page's form) gets pages; API clients get JSON."""
    return "text/html" in request.headers.get("Accept", "")


def page(title: str, body: str, status: int = 200) -> web.Response:
    text = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)} - outage-correlator</title>
<link rel="stylesheet" href="/static/base.css"></head>
<body><main>
<h1>{html.escape(title)}</h1>
{body}
</main></body></html>"""
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def _when(at: datetime | None) -> str:
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if at else "an unknown time"


def _about(view: IncidentView) -> str:
    return html.escape(
        f"{view.utility} {view.device_kind} {view.device_id}: {view.state}, "
        f"{view.customers_affected} customers affected, opened {_when(view.opened_at)}."
    )


def confirm_page(view: IncidentView, token: str, expires: str) -> web.Response:
    """The incident in one line and the button that acknowledges it."""
    action = f"/v1/incidents/{quote(view.incident_id, safe='')}/acknowledge-link"
    return page(
        f"Acknowledge incident {view.incident_id}",
        f"""<p>{_about(view)}</p>
<form method="post" action="{html.escape(action)}">
<input type="hidden" name="token" value="{html.escape(token)}">
<input type="hidden" name="expires" value="{html.escape(expires)}">
<button type="submit">Acknowledge</button>
</form>""",
    )


def owned_page(view: IncidentView, status: int = 200) -> web.Response:
    """Someone acknowledged it already: who, and when; no button."""
    who = html.escape(view.acknowledged_by or "")
    return page(
        f"Incident {view.incident_id} is acknowledged",
        f"<p>{_about(view)}</p>\n<p>Acknowledged by <strong>{who}</strong> at "
        f"{_when(view.acknowledged_at)}.</p>",
        status,
    )


def done_page(incident_id: str) -> web.Response:
    return page(
        f"Incident {incident_id} acknowledged",
        "<p>Thank you: the reminders for this incident stop. "
        "Its timeline names the notification link.</p>",
        202,
    )


def refused_page(status: int, reason: str) -> web.Response:
    return page("The link cannot be used", f'<p class="error">{html.escape(reason)}</p>', status)
