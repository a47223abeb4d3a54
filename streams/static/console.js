/* Agent console: one search box with type-ahead, the answer to read to the caller, the call form. */
'use strict';

(() => {
  const { t } = window.I18N;
  const { api, el, time, sleep } = window.App;

  const form = document.getElementById('search-form');
  const input = document.getElementById('search');
  const list = document.getElementById('suggestions');
  const choices = document.getElementById('choices');
  const banner = document.getElementById('banner');
  const callForm = document.getElementById('call-form');
  const callPlace = document.getElementById('call-place');
  const symptom = document.getElementById('symptom');
  const outcome = document.getElementById('call-outcome');

  const SYMPTOMS = {
    heat: ['no_heat', 'low_pressure', 'no_hot_water', 'other'],
    power: ['no_power', 'flicker', 'other'],
  };
  const OTHER_SYMPTOMS = ['no_signal', 'other'];

  let suggestions = [];
  let active = -1;
  let suggestTimer = 0;
  let suggestSeq = 0;
  let lookupSeq = 0;
  let pollSeq = 0;
  let found = null; // {query, answer} of the last successful lookup
  let shown = null; // what the banner shows, kept to redraw it in another language
  let said = null; // the outcome line: {key, vars, error}
  let posting = false;

  // ---- type-ahead -----------------------------------------------------------------------

  function closeList() {
    suggestions = [];
    active = -1;
    list.replaceChildren();
    list.hidden = true;
    input.setAttribute('aria-expanded', 'false');
    input.removeAttribute('aria-activedescendant');
  }

  function showList(items) {
    suggestions = items;
    active = -1;
    input.removeAttribute('aria-activedescendant');
    list.replaceChildren(
      ...items.map((item, index) =>
        el(
          'li',
          { id: `suggestion-${index}`, role: 'option', 'aria-selected': 'false', 'data-index': index },
          el('span', { class: 'address', text: item.address }),
          el('span', { class: 'meta', text: [item.node_id, item.utility].filter(Boolean).join(' · ') }),
        ),
      ),
    );
    list.hidden = items.length === 0;
    input.setAttribute('aria-expanded', items.length ? 'true' : 'false');
    if (items.length) placeList();
  }

  // The list sits first in <body> (see streams/pages.py); draw it right under the search box.
  function placeList() {
    const box = input.getBoundingClientRect();
    list.style.left = `${box.left + window.scrollX}px`;
    list.style.top = `${box.bottom + window.scrollY + 2}px`;
    list.style.width = `${box.width}px`;
  }

  window.addEventListener('resize', () => {
    if (!list.hidden) placeList();
  });

  function highlight(index) {
    active = index;
    for (const option of list.children) {
      const on = Number(option.dataset.index) === index;
      option.setAttribute('aria-selected', on ? 'true' : 'false');
      if (on) option.scrollIntoView({ block: 'nearest' });
    }
    if (index >= 0) input.setAttribute('aria-activedescendant', `suggestion-${index}`);
    else input.removeAttribute('aria-activedescendant');
  }

  async function suggest(text) {
    const seq = ++suggestSeq;
    const result = await api('GET', `/v1/suggest?q=${encodeURIComponent(text)}`);
    if (seq !== suggestSeq || input.value.trim() !== text) return; // typed on since
    if (result.ok && result.data) showList(result.data.suggestions || []);
    else closeList();
  }

  function pick(index) {
    const item = suggestions[index];
    if (!item) return;
    input.value = item.address;
    closeList();
    lookup(item.address);
  }

  input.addEventListener('input', () => {
    clearTimeout(suggestTimer);
    suggestSeq++;
    const text = input.value.trim();
    if (text.length < 2) {
      closeList();
      return;
    }
    suggestTimer = setTimeout(() => suggest(text), 150);
  });

  input.addEventListener('keydown', (event) => {
    const open = !list.hidden && suggestions.length > 0;
    if (event.key === 'ArrowDown' && open) {
      event.preventDefault();
      highlight(active < suggestions.length - 1 ? active + 1 : 0);
    } else if (event.key === 'ArrowUp' && open) {
      event.preventDefault();
      highlight(active > 0 ? active - 1 : suggestions.length - 1);
    } else if (event.key === 'Enter' && open && active >= 0) {
      event.preventDefault();
      pick(active);
    } else if (event.key === 'Escape' && open) {
      event.preventDefault();
      closeList();
    }
  });

  input.addEventListener('blur', () => setTimeout(closeList, 150));
  list.addEventListener('mousedown', (event) => event.preventDefault()); // keep the focus
  list.addEventListener('click', (event) => {
    const option = event.target.closest('[role=option]');
    if (option) pick(Number(option.dataset.index));
  });

  // ---- lookup ---------------------------------------------------------------------------

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    clearTimeout(suggestTimer);
    suggestSeq++;
    closeList();
    lookup(input.value.trim());
  });

  async function lookup(query) {
    if (!query) {
      show({ kind: 'message', key: 'search_empty' });
      input.focus();
      return;
    }
    const seq = ++lookupSeq;
    show({ kind: 'message', key: 'searching' });
    const result = await api('GET', `/v1/outages?q=${encodeURIComponent(query)}`);
    if (seq !== lookupSeq) return; // a newer search is under way
    if (result.ok && result.data) {
      found = { query, answer: result.data };
      setSymptoms(result.data.utility);
      show({ kind: 'answer', answer: result.data });
    } else {
      found = null;
      setSymptoms(null);
      const alternatives = (result.data && result.data.suggestions) || [];
      show({ kind: 'missing', reason: result.error, status: result.status, alternatives });
    }
    drawPlace();
  }

  function show(state) {
    shown = state;
    drawBanner();
  }

  function fact(label, value) {
    return el('div', { class: 'fact' }, el('dt', { text: label }), el('dd', { text: value }));
  }

  function drawBanner() {
    banner.className = 'banner';
    choices.hidden = true;
    choices.replaceChildren();
    if (!shown) {
      banner.replaceChildren();
      return;
    }
    if (shown.kind === 'message') {
      banner.replaceChildren(el('p', { text: t(shown.key) }));
      return;
    }
    if (shown.kind === 'missing') {
      banner.classList.add('banner-error');
      const text = shown.status === 404 ? t('not_found', { reason: shown.reason }) : t('error', { reason: shown.reason });
      banner.replaceChildren(el('p', { text }));
      if (shown.alternatives.length) {
        choices.hidden = false;
        choices.append(
          el('p', { class: 'hint', text: t('did_you_mean') }),
          ...shown.alternatives.map((item) => {
            const button = el('button', { type: 'button', class: 'choice-button' }, item.address || item.node_id);
            button.addEventListener('click', () => {
              input.value = item.address || item.node_id;
              lookup(input.value);
            });
            return button;
          }),
        );
      }
      return;
    }
    const answer = shown.answer;
    const place = [answer.address, answer.node_id].filter(Boolean).join(' · ');
    const incident = answer.incident;
    if (answer.status === 'known_fault' && incident) {
      banner.classList.add('banner-fault');
      const cause = incident.cause && incident.cause !== 'unknown' ? incident.cause : t('cause_unknown');
      banner.replaceChildren(
        el('p', { class: 'verdict' }, el('strong', { text: incident.planned ? `${t('known_fault')} · ${t('planned_work')}` : t('known_fault') })),
        el('p', { class: 'place', text: place }),
        el(
          'dl',
          { class: 'facts' },
          fact(t('cause'), cause),
          fact(t('since'), time(incident.opened_at)),
          fact(t('etr'), incident.etr ? time(incident.etr) : t('etr_unknown')),
        ),
        el(
          'p',
          { class: 'neighbours' },
          el('strong', { text: t('neighbours_called', { n: incident.reporters ?? 0 }) }),
          ` · ${t('customers_affected', { n: incident.customers_affected ?? 0 })}`,
          ` · ${t('incident_id', { id: incident.incident_id })}`,
        ),
        el('p', { class: 'quote-label', text: t('read_to_caller') }),
        el('blockquote', { class: 'sentence', lang: 'en', text: answer.sentence || '' }),
      );
    } else {
      banner.classList.add('banner-clear');
      banner.replaceChildren(
        el('p', { class: 'verdict' }, el('strong', { text: t('no_known_fault') })),
        el('p', { class: 'place', text: place }),
      );
      if (answer.sentence && answer.status === 'known_fault') {
        banner.append(
          el('p', { class: 'quote-label', text: t('read_to_caller') }),
          el('blockquote', { class: 'sentence', lang: 'en', text: answer.sentence }),
        );
      }
    }
  }

  // ---- the call form --------------------------------------------------------------------

  function setSymptoms(utility) {
    const keep = symptom.value;
    const values = SYMPTOMS[utility] || OTHER_SYMPTOMS;
    symptom.replaceChildren(
      ...values.map((value) => el('option', { value, 'data-i18n': `symptom_${value}` }, t(`symptom_${value}`))),
    );
    if (values.includes(keep)) symptom.value = keep;
  }

  function drawPlace() {
    if (found) {
      const answer = found.answer;
      const place = [answer.address || found.query, answer.node_id].filter(Boolean).join(' · ');
      callPlace.removeAttribute('data-i18n');
      callPlace.textContent = t('call_place', { place });
    } else {
      callPlace.dataset.i18n = 'search_first';
      callPlace.textContent = t('search_first');
    }
  }

  function say(key, vars, error = false) {
    said = { key, vars, error };
    drawOutcome();
  }

  function drawOutcome() {
    if (!said) return;
    outcome.classList.toggle('error', said.error);
    outcome.classList.toggle('joined', said.key === 'outcome_joined');
    outcome.textContent = t(said.key, said.vars);
  }

  function randomId() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
  }

  callForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (!found) {
      say('search_first', null, true);
      input.focus();
      return;
    }
    const answer = found.answer;
    const body = {
      type: 'call_reported',
      schema_version: 1,
      event_id: `console-${randomId()}`,
      occurred_at: new Date().toISOString(),
      utility: answer.utility,
    };
    if (answer.node_kind === 'premise') body.premise_id = answer.node_id;
    else if (answer.node_kind === 'building') body.building_id = answer.node_id;
    else body.address = found.query;
    body.symptom = symptom.value || 'other';
    const scope = callForm.querySelector('input[name=scope]:checked');
    body.scope = scope ? scope.value : 'whole_building';
    body.tags = [...callForm.querySelectorAll('input[name=tags]:checked')].map((box) => box.value);
    const caller = document.getElementById('caller').value.trim();
    const notes = document.getElementById('notes').value.trim();
    if (caller) body.caller = caller;
    if (notes) body.notes = notes;

    if (posting) return; // a double press records one call
    posting = true;
    callForm.setAttribute('aria-busy', 'true');
    say('recording');
    const result = await api('POST', '/v1/calls', body);
    posting = false;
    callForm.removeAttribute('aria-busy');
    if (!result.ok) {
      say('error', { reason: result.error }, true);
      return;
    }
    const eventId = (result.data && result.data.event_id) || body.event_id;
    for (const box of callForm.querySelectorAll('input[name=tags]')) box.checked = false;
    document.getElementById('caller').value = '';
    document.getElementById('notes').value = '';
    say('waiting_outcome', { id: eventId });
    poll(eventId);
  });

  /** Ask what became of the call every 500 ms for up to 15 s; "pending" may still change. */
  async function poll(eventId) {
    const seq = ++pollSeq;
    const deadline = Date.now() + 15000;
    let last = null;
    while (Date.now() < deadline) {
      await sleep(500);
      if (seq !== pollSeq) return; // another call was recorded since
      const result = await api('GET', `/v1/calls/${encodeURIComponent(eventId)}`);
      if (seq !== pollSeq) return;
      if (result.ok && result.data) {
        last = result.data.outcome;
        if (last === 'joined_incident') {
          say('outcome_joined', { id: result.data.incident_id });
          return;
        }
        if (last === 'individual') {
          say('outcome_individual');
          return;
        }
        say('outcome_pending');
      } else if (result.status !== 404) {
        say('error', { reason: result.error }, true);
        return;
      }
    }
    if (last === null) say('outcome_unknown', { id: eventId });
  }

  // ---- language switch ------------------------------------------------------------------

  window.I18N.onChange(() => {
    drawBanner();
    drawPlace();
    drawOutcome();
  });

  setSymptoms(null);
  drawPlace();
  input.focus();
})();
