"""The two pages people work in all shift: the agent console and the shift board.

GET /console   agents: search a place, read the answer to the caller, record the call
GET /board     shift leads: active incidents live (server-sent events), actions, timeline,
               map, alerts sent and the handover report

The server sends a skeleton only; streams/static/{i18n,console,board}.js fill it from the JSON
API (the CSRF token for their POSTs comes from GET /v1/me) and base.css styles it. Nothing is
inline and nothing is loaded from elsewhere: the CSP is `default-src 'self'`. The English text
here is what shows before the scripts run; i18n.js holds every label in English and Chinese.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from aiohttp import web

from access.roles import Permission
from streams.account import html_response
from streams.web import Api, Call

if TYPE_CHECKING:
    from streams.app import Service

PAGE_RESPONSES = {200: "the page", 303: "to /login without a session", 403: "lacks the role"}


def header(call: Call, current: str) -> str:
    """App name, who is logged in, the language switch, the pages, and logging out."""
    name = call.principal.name if call.principal else ""
    csrf = call.session.csrf if call.session else ""

    def link(path: str, key: str, text: str) -> str:
        here = ' aria-current="page"' if path == current else ""
        return f'<a href="{path}" id="nav-{key}" data-i18n="nav_{key}"{here}>{text}</a>'

    return f"""<a class="skip" href="#main" data-i18n="skip_to_main">Skip to main content</a>
<header class="top">
<a class="brand" href="/" data-i18n="app_name">outage-correlator</a>
<nav aria-label="Pages" data-i18n-aria-label="nav_label">
{link("/console", "console", "Console")}
{link("/board", "board", "Board")}
</nav>
<span class="spacer"></span>
<span id="who" class="who" data-name="{html.escape(name)}">{html.escape(name)}</span>
<span class="lang-switch">
<label for="lang" data-i18n="language">Language</label>
<select id="lang">
<option value="en" lang="en" data-i18n="lang_en">English</option>
<option value="zh" lang="zh" data-i18n="lang_zh">中文</option>
</select>
</span>
<form method="post" action="/logout" class="logout">
<input type="hidden" name="csrf_token" id="logout-csrf" value="{html.escape(csrf)}">
<button type="submit" data-i18n="logout">Log out</button>
</form>
</header>"""


def document(
    call: Call,
    *,
    current: str,
    title_key: str,
    title: str,
    script: str,
    main: str,
    before: str = "",
) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title data-i18n="{title_key}">{html.escape(title)}</title>
<link rel="stylesheet" href="/static/base.css">
<script src="/static/i18n.js" defer></script>
<script src="/static/{script}" defer></script>
</head>
<body class="app">
{before}{header(call, current)}
{main}
</body></html>"""


# The type-ahead list is positioned under the search box by console.js but comes first in the
# document: its options then precede those of the header's language <select> (which are in the
# accessibility tree even while the select is closed). It never takes the focus, so the tab
# order is the visual one.
SUGGESTIONS = """<ul id="suggestions" role="listbox" hidden aria-label="Suggestions"
 data-i18n-aria-label="suggestions_label"></ul>
"""

CONSOLE_MAIN = """<main id="main" class="console" tabindex="-1">
<h1 data-i18n="console_title">Agent console</h1>
<div class="console-grid">
<section class="lookup" aria-labelledby="lookup-title">
<h2 id="lookup-title" class="sr-only" data-i18n="lookup_title">Look up a place</h2>
<form id="search-form" role="search" autocomplete="off" novalidate>
<label for="search" data-i18n="search_label">Address, premise, building or phone</label>
<div class="search-row">
<div class="combo">
<input id="search" name="q" type="text" maxlength="200" spellcheck="false"
 role="combobox" aria-autocomplete="list" aria-expanded="false" aria-controls="suggestions"
 aria-describedby="search-hint">
</div>
<button type="submit" id="search-button" data-i18n="search_button">Search</button>
</div>
<p id="search-hint" class="hint" data-i18n="search_hint">Type at least 2 characters for
suggestions; arrow keys and Enter pick one.</p>
</form>
<div id="choices" class="choices" hidden></div>
<div id="banner" class="banner" role="status" aria-live="polite"></div>
</section>
<section class="call" aria-labelledby="call-title">
<form id="call-form" novalidate>
<h2 id="call-title" data-i18n="call_title">Record the call</h2>
<p id="call-place" class="hint" data-i18n="search_first">Search for the place first.</p>
<label for="symptom" data-i18n="symptom">Symptom</label>
<select id="symptom" name="symptom"></select>
<fieldset>
<legend data-i18n="scope">Who is affected</legend>
<label class="choice" for="scope-whole"><input type="radio" id="scope-whole" name="scope"
 value="whole_building" checked>
 <span data-i18n="scope_whole_building">Whole building</span></label>
<label class="choice" for="scope-me"><input type="radio" id="scope-me" name="scope"
 value="only_me"> <span data-i18n="scope_only_me">Only me</span></label>
</fieldset>
<fieldset>
<legend data-i18n="tags_legend">Individual causes</legend>
<label class="choice" for="tag-arrears"><input type="checkbox" id="tag-arrears" name="tags"
 value="arrears"> <span data-i18n="tag_arrears">Payment arrears</span></label>
<label class="choice" for="tag-prepaid"><input type="checkbox" id="tag-prepaid" name="tags"
 value="prepaid_empty"> <span data-i18n="tag_prepaid_empty">Prepaid meter empty</span></label>
<label class="choice" for="tag-appliance"><input type="checkbox" id="tag-appliance" name="tags"
 value="own_appliance"> <span data-i18n="tag_own_appliance">Own appliance</span></label>
<label class="choice" for="tag-wiring"><input type="checkbox" id="tag-wiring" name="tags"
 value="internal_wiring"> <span data-i18n="tag_internal_wiring">Internal wiring</span></label>
</fieldset>
<label for="caller" data-i18n="caller">Caller phone (optional)</label>
<input id="caller" name="caller" type="tel" maxlength="40" autocomplete="off">
<label for="notes" data-i18n="notes">Notes (optional)</label>
<textarea id="notes" name="notes" rows="3" maxlength="2000"></textarea>
<button type="submit" id="record-call" data-i18n="record_call">Record call</button>
</form>
<p id="call-outcome" class="outcome" role="status" aria-live="polite"></p>
</section>
</div>
</main>"""

BOARD_MAIN = """<main id="main" class="board" tabindex="-1">
<div class="board-head">
<h1 data-i18n="board_title">Shift board</h1>
<span id="live" class="live" data-state="connecting"><span class="dot" aria-hidden="true"></span>
<span id="live-text" data-i18n="live_connecting">Connecting</span></span>
</div>
<p id="status" class="status" role="status" aria-live="polite"></p>
<p id="backlog" class="status backlog" role="status" aria-live="polite" hidden></p>
<div class="board-grid">
<section class="incidents-panel" aria-labelledby="incidents-title">
<h2 id="incidents-title" data-i18n="active_incidents">Active incidents</h2>
<div class="table-wrap">
<table id="incidents">
<thead><tr>
<th scope="col" data-i18n="col_state">State</th>
<th scope="col" data-i18n="col_place">Place</th>
<th scope="col" data-i18n="col_cause">Cause</th>
<th scope="col" data-i18n="col_etr">ETR</th>
<th scope="col" class="num" data-i18n="col_calls">Calls</th>
<th scope="col" class="num" data-i18n="col_customers">Customers</th>
<th scope="col" data-i18n="col_updated">Last change</th>
<th scope="col" data-i18n="col_actions">Actions</th>
</tr></thead>
<tbody></tbody>
</table>
</div>
<p id="no-incidents" class="hint" data-i18n="no_incidents">No active incidents.</p>
</section>
<aside class="side">
<section id="timeline-panel" class="panel" aria-labelledby="timeline-title">
<h2 id="timeline-title" data-i18n="timeline_title">Timeline</h2>
<p id="timeline-for" class="hint" data-i18n="timeline_pick">Pick Timeline on a row to see
its history.</p>
<ol id="timeline" class="timeline"></ol>
</section>
<section id="map-panel" class="panel" aria-labelledby="map-title">
<h2 id="map-title" data-i18n="map_title">Map</h2>
<div id="map" class="map"></div>
</section>
<section id="alerts-panel" class="panel" aria-labelledby="alerts-title">
<h2 id="alerts-title" data-i18n="alerts_title">Alerts</h2>
<ul id="alerts" class="alerts"></ul>
</section>
<section id="handover-panel" class="panel" aria-labelledby="handover-title">
<div class="panel-head">
<h2 id="handover-title" data-i18n="handover_title">Shift handover</h2>
<button type="button" id="handover-refresh" class="small" data-i18n="refresh">Refresh</button>
</div>
<pre id="handover" class="handover" tabindex="0"></pre>
</section>
</aside>
</div>
</main>"""


def console_page(call: Call) -> str:
    return document(
        call,
        current="/console",
        title_key="console_page_title",
        title="Agent console - outage-correlator",
        script="console.js",
        main=CONSOLE_MAIN,
        before=SUGGESTIONS,
    )


def board_page(call: Call) -> str:
    return document(
        call,
        current="/board",
        title_key="board_page_title",
        title="Shift board - outage-correlator",
        script="board.js",
        main=BOARD_MAIN,
    )


def register(service: Service, api: Api) -> None:
    op = api.op

    @op(
        "GET",
        "/console",
        Permission.LOOKUP,
        "Agent console",
        page=True,
        produces=("text/html",),
        responses=PAGE_RESPONSES,
    )
    async def get_console(call: Call) -> web.Response:
        return html_response(console_page(call))

    @op(
        "GET",
        "/board",
        Permission.ACT,
        "Shift board",
        page=True,
        produces=("text/html",),
        responses=PAGE_RESPONSES,
    )
    async def get_board(call: Call) -> web.Response:
        return html_response(board_page(call))
