/* Shift board: active incidents kept live by server-sent events, actions, timeline, map,
   alerts sent and the handover report. */
'use strict';

(() => {
  const { t } = window.I18N;
  const { api, el, time } = window.App;

  // Active states of the incident book; any other state (restored, merged...) leaves the board.
  const ACTIVE = new Set(['suspected', 'predicted', 'confirmed', 'stale']);
  const ACTIONS = [
    ['acknowledge', 'acknowledge'],
    ['cause', 'cause_button'],
    ['etr', 'etr_button'],
    ['resolve', 'resolve'],
    ['timeline', 'timeline'],
  ];
  const COLUMNS = 8;

  const tbody = document.querySelector('#incidents tbody');
  const statusLine = document.getElementById('status');
  const live = document.getElementById('live');
  const liveText = document.getElementById('live-text');

  const incidents = new Map(); // incident id -> the incident as the API sends it
  const rows = new Map(); // incident id -> its <tr>
  let rowCount = 0;
  let open = null; // the inline form: {id, kind, tr, opener}
  let snapshotSeen = false;
  let said = null;
  let selected = null; // the incident whose timeline is shown
  let timeline = null;
  let timelineSeq = 0;
  let alerts = null;
  let handover = null;

  function say(key, vars, error = false) {
    said = { key, vars, error };
    drawStatus();
  }

  function drawStatus() {
    if (!said) return;
    statusLine.textContent = t(said.key, said.vars);
    statusLine.classList.toggle('error', said.error);
  }

  // ---- the table ------------------------------------------------------------------------

  function order(a, b) {
    return (
      (b.customers_affected || 0) - (a.customers_affected || 0) ||
      String(a.opened_at).localeCompare(String(b.opened_at)) ||
      String(a.incident_id).localeCompare(String(b.incident_id))
    );
  }

  function place(incident) {
    return (incident.path || []).join(' > ') || incident.device_id || incident.incident_id;
  }

  function stateName(state) {
    const key = `state_${state}`;
    const text = t(key);
    return text === key ? state : text;
  }

  function rowFor(incident) {
    const id = incident.incident_id;
    let tr = rows.get(id);
    if (!tr) {
      const placeId = `place-${++rowCount}`;
      const actions = el('td', { class: 'actions' });
      for (const [action, key] of ACTIONS) {
        actions.append(
          el('button', { type: 'button', class: 'small', 'data-action': action, 'data-i18n': key, 'aria-describedby': placeId }, t(key)),
        );
      }
      tr = el(
        'tr',
        { 'data-incident': id },
        el('td', { class: 'state' }),
        el('th', { scope: 'row', class: 'place', id: placeId }),
        el('td', { class: 'cause' }),
        el('td', { class: 'etr' }),
        el('td', { class: 'num calls' }),
        el('td', { class: 'num customers' }),
        el('td', { class: 'updated' }),
        actions,
      );
      rows.set(id, tr);
    }
    const cells = tr.children;
    const badge = el('span', { class: `badge state-${incident.state}` }, stateName(incident.state));
    cells[0].replaceChildren(badge);
    if (incident.planned) cells[0].append(el('span', { class: 'tag' }, t('planned')));
    if (incident.acknowledged_by) {
      cells[0].append(el('span', { class: 'owner' }, t('owner', { name: incident.acknowledged_by })));
    }
    cells[1].textContent = place(incident);
    cells[2].textContent = incident.cause && incident.cause !== 'unknown' ? incident.cause : t('cause_unknown');
    cells[2].classList.toggle('muted', !incident.cause || incident.cause === 'unknown');
    cells[3].textContent = incident.etr ? time(incident.etr) : t('etr_unknown');
    cells[3].classList.toggle('muted', !incident.etr);
    cells[4].textContent = String(incident.calls ?? 0);
    cells[5].textContent = String(incident.customers_affected ?? 0);
    cells[6].textContent = time(incident.updated_at);
    return tr;
  }

  function render() {
    const list = [...incidents.values()].sort(order);
    for (const id of [...rows.keys()]) {
      if (!incidents.has(id)) {
        rows.delete(id);
        if (open && open.id === id) closeForm(false);
      }
    }
    const wanted = [];
    for (const incident of list) {
      wanted.push(rowFor(incident));
      if (open && open.id === incident.incident_id) wanted.push(open.tr);
    }
    const current = [...tbody.children];
    if (current.length !== wanted.length || current.some((node, i) => node !== wanted[i])) {
      const focused = document.activeElement;
      tbody.replaceChildren(...wanted);
      if (focused && focused.isConnected && document.activeElement !== focused) focused.focus();
    }
    document.getElementById('no-incidents').hidden = list.length > 0;
    drawMap(list);
  }

  function update(incident) {
    if (!incident || !incident.incident_id) return;
    if (ACTIVE.has(incident.state)) incidents.set(incident.incident_id, incident);
    else incidents.delete(incident.incident_id);
  }

  // ---- actions --------------------------------------------------------------------------

  async function act(id, kind, body) {
    const result = await api('POST', `/v1/incidents/${encodeURIComponent(id)}/${kind}`, body);
    if (result.ok) {
      say(`done_${kind}`, { id });
      return true;
    }
    say('action_failed', { id, reason: result.error }, true);
    return false;
  }

  function localValue(date) {
    const shifted = new Date(date.getTime() - date.getTimezoneOffset() * 60000);
    return shifted.toISOString().slice(0, 16);
  }

  function closeForm(returnFocus) {
    if (!open) return;
    const { tr, opener } = open;
    open = null;
    tr.remove();
    if (returnFocus && opener.isConnected) opener.focus();
  }

  function openForm(id, kind, opener) {
    const same = open && open.id === id && open.kind === kind;
    closeForm(same);
    if (same) return; // the button toggles its form
    const incident = incidents.get(id) || {};
    const inputId = `action-${kind}`;
    let field;
    if (kind === 'cause') {
      const cause = incident.cause && incident.cause !== 'unknown' ? incident.cause : null;
      field = el('input', { id: inputId, type: 'text', maxlength: 200, required: true, value: cause });
    } else if (kind === 'etr') {
      const soon = new Date(Math.ceil((Date.now() + 2 * 3600000) / 900000) * 900000);
      field = el('input', { id: inputId, type: 'datetime-local', required: true, value: localValue(incident.etr ? new Date(incident.etr) : soon) });
    } else {
      field = el('input', { id: inputId, type: 'text', maxlength: 2000 });
    }
    const labelKey = { cause: 'new_cause', etr: 'new_etr', resolve: 'resolve_note' }[kind];
    const submitKey = kind === 'resolve' ? 'resolve_confirm' : 'save';
    const cancel = el('button', { type: 'button', class: 'secondary', 'data-i18n': 'cancel' }, t('cancel'));
    const form = el(
      'form',
      { class: 'inline-form', 'data-kind': kind, novalidate: true },
      el('label', { for: inputId, 'data-i18n': labelKey, 'data-i18n-vars': JSON.stringify({ id }) }, t(labelKey, { id })),
      field,
      el('button', { type: 'submit', class: kind === 'resolve' ? 'danger' : null, 'data-i18n': submitKey }, t(submitKey)),
      cancel,
    );
    const tr = el('tr', { class: 'action-row', 'data-for': id }, el('td', { colspan: COLUMNS }, form));
    open = { id, kind, tr, opener };
    cancel.addEventListener('click', () => closeForm(true));
    form.addEventListener('keydown', (event) => {
      if (event.key === 'Escape') {
        event.preventDefault();
        closeForm(true);
      }
    });
    let sending = false;
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      if (sending) return;
      let body = {};
      const value = field.value.trim();
      if (kind === 'cause') {
        if (!value) {
          say('cause_required', null, true);
          field.focus();
          return;
        }
        body = { cause: value };
      } else if (kind === 'etr') {
        const when = new Date(value); // "YYYY-MM-DDTHH:MM" is read as local time
        if (!value || Number.isNaN(when.getTime())) {
          say('invalid_etr', null, true);
          field.focus();
          return;
        }
        body = { etr: when.toISOString() };
      } else if (value) {
        body = { note: value };
      }
      sending = true;
      form.setAttribute('aria-busy', 'true');
      const done = await act(id, kind, body);
      sending = false;
      form.removeAttribute('aria-busy');
      if (done) closeForm(true);
      else field.focus();
    });
    render();
    field.focus();
  }

  tbody.addEventListener('click', (event) => {
    const button = event.target.closest('button[data-action]');
    const tr = button && button.closest('tr[data-incident]');
    if (!tr) return;
    const id = tr.dataset.incident;
    const action = button.dataset.action;
    if (action === 'acknowledge') act(id, 'acknowledge', {});
    else if (action === 'timeline') showTimeline(id);
    else openForm(id, action, button);
  });

  // ---- timeline -------------------------------------------------------------------------

  function showTimeline(id) {
    selected = id;
    say('timeline_shown', { id });
    loadTimeline(id);
  }

  async function loadTimeline(id) {
    const seq = ++timelineSeq;
    const result = await api('GET', `/v1/incidents/${encodeURIComponent(id)}`);
    if (seq !== timelineSeq || selected !== id) return;
    timeline = result.ok && result.data
      ? { id, entries: result.data.timeline || [] }
      : { id, error: result.error };
    drawTimeline();
  }

  function drawTimeline() {
    if (!timeline) return;
    const heading = document.getElementById('timeline-for');
    const list = document.getElementById('timeline');
    heading.removeAttribute('data-i18n');
    if (timeline.error) {
      heading.textContent = t('action_failed', { id: timeline.id, reason: timeline.error });
      heading.classList.add('error');
      list.replaceChildren();
      return;
    }
    heading.classList.remove('error');
    heading.textContent = t('timeline_for', { id: timeline.id });
    list.replaceChildren(
      ...timeline.entries
        .slice()
        .reverse()
        .map((entry) =>
          el('li', {}, el('time', { datetime: entry.at }, time(entry.at)), el('span', { class: 'summary' }, entry.summary)),
        ),
    );
  }

  // ---- map ------------------------------------------------------------------------------

  const SVG = 'http://www.w3.org/2000/svg';

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    for (const child of children) node.append(child);
    return node;
  }

  function drawMap(list) {
    const box = document.getElementById('map');
    const points = list.filter(
      (i) => i.location && Number.isFinite(i.location.lat) && Number.isFinite(i.location.lon),
    );
    if (!points.length) {
      box.replaceChildren(el('p', { class: 'hint', 'data-i18n': 'map_empty' }, t('map_empty')));
      return;
    }
    const width = 360;
    const height = 200;
    const pad = 24;
    const lats = points.map((p) => p.location.lat);
    const lons = points.map((p) => p.location.lon);
    const [south, north] = [Math.min(...lats), Math.max(...lats)];
    const [west, east] = [Math.min(...lons), Math.max(...lons)];
    const squeeze = Math.cos((((south + north) / 2) * Math.PI) / 180) || 1; // degrees of longitude shrink
    const spanX = (east - west) * squeeze || 1e-3;
    const spanY = north - south || 1e-3;
    const scale = Math.min((width - 2 * pad) / spanX, (height - 2 * pad) / spanY);
    const left = (width - spanX * scale) / 2;
    const top = (height - spanY * scale) / 2;
    const most = Math.max(1, ...points.map((p) => p.customers_affected || 0));
    const root = svg(
      'svg',
      { viewBox: `0 0 ${width} ${height}`, class: 'map-svg', role: 'img', 'aria-labelledby': 'map-svg-title' },
      svg('title', { id: 'map-svg-title' }, t('map_label')),
      svg('rect', { x: 0.5, y: 0.5, width: width - 1, height: height - 1, class: 'map-frame' }),
    );
    for (const p of points.slice().sort((a, b) => (b.customers_affected || 0) - (a.customers_affected || 0))) {
      const x = (p.location.lon - west) * squeeze * scale + left;
      const y = (north - p.location.lat) * scale + top;
      const r = 4 + 14 * Math.sqrt((p.customers_affected || 0) / most);
      const circle = svg(
        'circle',
        { cx: x.toFixed(1), cy: y.toFixed(1), r: r.toFixed(1), class: `dot state-${p.state}`, 'data-incident': p.incident_id },
        svg('title', {}, t('map_point', { place: place(p), n: p.customers_affected || 0, state: stateName(p.state) })),
      );
      circle.addEventListener('click', () => showTimeline(p.incident_id));
      root.append(circle);
    }
    box.replaceChildren(root);
  }

  // ---- alerts and handover --------------------------------------------------------------

  async function loadAlerts() {
    const result = await api('GET', '/v1/notifications');
    if (result.status === 403) {
      document.getElementById('alerts-panel').hidden = true;
      return false;
    }
    alerts = result.ok && result.data
      ? { items: onePerMessage(result.data.notifications || []).slice(0, 20) }
      : { error: result.error };
    drawAlerts();
    return true;
  }

  /** Newest first, one line per message sent: a grouped page keeps a record per alert it
   * carried (all with its `notification` key), shown once with how many it covered. */
  function onePerMessage(records) {
    const lines = [];
    const byMessage = new Map();
    for (const n of records.slice().reverse()) {
      const message = n.notification ? `${n.notification}|${n.channel || ''}|${n.status}` : null;
      if (message && byMessage.has(message)) {
        byMessage.get(message).covers += 1;
        continue;
      }
      const line = { ...n, covers: 1 };
      if (message) byMessage.set(message, line);
      lines.push(line);
    }
    return lines;
  }

  function drawAlerts() {
    if (!alerts) return;
    const list = document.getElementById('alerts');
    if (alerts.error) {
      list.replaceChildren(el('li', { class: 'error' }, t('error', { reason: alerts.error })));
      return;
    }
    if (!alerts.items.length) {
      list.replaceChildren(el('li', { class: 'hint' }, t('alerts_empty')));
      return;
    }
    list.replaceChildren(
      ...alerts.items.map((n) => {
        const status = t(`alert_${n.status}`) === `alert_${n.status}` ? n.status || '' : t(`alert_${n.status}`);
        const item = el(
          'li',
          { class: n.status === 'failed' ? 'failed' : null },
          el('span', { class: 'subject' }, n.subject || [n.kind, n.incident_id].filter(Boolean).join(' ')),
          el('span', { class: 'meta' }, t('alert_line', { status, receiver: n.receiver || '', channel: n.channel || '' })),
        );
        if (n.delivered_at) item.prepend(el('time', { datetime: n.delivered_at }, time(n.delivered_at)));
        if (n.covers > 1) item.append(el('span', { class: 'meta' }, t('alert_covers', { n: n.covers })));
        if (n.last_error) item.append(el('span', { class: 'meta' }, n.last_error));
        return item;
      }),
    );
  }

  async function loadHandover() {
    const pre = document.getElementById('handover');
    pre.textContent = t('loading');
    const result = await api('GET', '/v1/reports/handover?format=table');
    if (result.status === 403) {
      document.getElementById('handover-panel').hidden = true;
      return;
    }
    handover = result.ok ? { text: result.text || (result.data ? JSON.stringify(result.data, null, 2) : '') } : { error: result.error };
    drawHandover();
  }

  function drawHandover() {
    if (!handover) return;
    const pre = document.getElementById('handover');
    pre.classList.toggle('error', Boolean(handover.error));
    pre.textContent = handover.error ? t('error', { reason: handover.error }) : handover.text || t('handover_empty');
  }

  document.getElementById('handover-refresh').addEventListener('click', loadHandover);

  // ---- live updates ---------------------------------------------------------------------

  function setLive(state) {
    live.dataset.state = state;
    liveText.dataset.i18n = `live_${state}`;
    liveText.textContent = t(`live_${state}`);
  }

  function parse(text) {
    try {
      return JSON.parse(text);
    } catch (_) {
      return null;
    }
  }

  let source = null;
  let retry = 0;

  function connect() {
    setLive('connecting');
    source = new EventSource('/v1/stream');
    source.addEventListener('open', () => setLive('connected'));
    source.addEventListener('snapshot', (event) => {
      const data = parse(event.data);
      if (!data) return;
      snapshotSeen = true;
      incidents.clear();
      for (const incident of data.incidents || []) update(incident);
      setLive('connected');
      render();
      if (selected) loadTimeline(selected);
    });
    source.addEventListener('incident', (event) => {
      const incident = parse(event.data);
      update(incident);
      render();
      if (incident && incident.incident_id === selected) loadTimeline(selected);
    });
    source.addEventListener('error', () => {
      setLive('reconnecting');
      if (source.readyState === EventSource.CLOSED) {
        // The browser gave up (e.g. the session ended): try again ourselves a little later.
        source.close();
        clearTimeout(retry);
        retry = setTimeout(connect, 5000);
      }
    });
  }

  async function firstLoad() {
    const result = await api('GET', '/v1/incidents');
    if (result.ok && result.data && !snapshotSeen) {
      for (const incident of result.data.incidents || []) update(incident);
      render();
    }
  }

  window.I18N.onChange(() => {
    render();
    drawStatus();
    drawTimeline();
    drawAlerts();
    drawHandover();
  });

  // Under overload the board says how far behind the service is, never silently stale.
  const CATCHING_UP = 50;
  const backlogLine = document.getElementById('backlog');
  async function checkBacklog() {
    const result = await api('GET', '/health');
    const behind = result.ok && result.data ? result.data.backlog || 0 : 0;
    backlogLine.hidden = behind < CATCHING_UP;
    backlogLine.textContent = behind >= CATCHING_UP ? t('catching_up', { n: behind }) : '';
  }

  render();
  connect();
  firstLoad();
  checkBacklog();
  setInterval(checkBacklog, 5000);
  loadHandover();
  loadAlerts().then((allowed) => {
    if (allowed) setInterval(loadAlerts, 30000);
  });
})();
