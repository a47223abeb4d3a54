/* Labels in English and Chinese, and the helpers both pages share (API calls, the header).
   Language: what was picked before (localStorage), else navigator.language (zh* -> zh). */
'use strict';

(() => {
  const DICT = {
    en: {
      app_name: 'outage-correlator',
      skip_to_main: 'Skip to main content',
      nav_label: 'Pages',
      nav_console: 'Console',
      nav_board: 'Board',
      language: 'Language',
      lang_en: 'English',
      lang_zh: '中文',
      logged_in_as: 'Logged in as {name}',
      logout: 'Log out',
      network_error: 'The service cannot be reached: check the connection and try again.',
      session_expired: 'Your session has ended: log in again.',
      error: 'Error: {reason}',
      loading: 'Loading…',
      refresh: 'Refresh',
      save: 'Save',
      cancel: 'Cancel',

      console_page_title: 'Agent console - outage-correlator',
      console_title: 'Agent console',
      lookup_title: 'Look up a place',
      search_label: 'Address, premise, building or phone',
      search_button: 'Search',
      search_hint: 'Type at least 2 characters for suggestions; arrow keys and Enter pick one.',
      suggestions_label: 'Suggestions',
      searching: 'Searching…',
      search_empty: 'Type an address, a premise or building id, or a phone number.',
      not_found: 'Place not found: {reason}',
      did_you_mean: 'Did you mean:',
      known_fault: 'Known fault',
      no_known_fault: 'No known fault here: log an individual repair',
      planned_work: 'Planned work',
      cause: 'Cause',
      cause_unknown: 'not known yet',
      since: 'Since',
      etr: 'Expected restoration',
      etr_unknown: 'not known yet',
      neighbours_called: '{n} neighbours called',
      customers_affected: '{n} customers affected',
      incident_id: 'Incident {id}',
      read_to_caller: 'Read to the caller',
      call_title: 'Record the call',
      call_place: 'For: {place}',
      search_first: 'Search for the place first.',
      symptom: 'Symptom',
      symptom_no_heat: 'No heating',
      symptom_low_pressure: 'Low pressure',
      symptom_no_hot_water: 'No hot water',
      symptom_no_power: 'No power',
      symptom_flicker: 'Flickering supply',
      symptom_no_signal: 'No signal',
      symptom_other: 'Other',
      scope: 'Who is affected',
      scope_whole_building: 'Whole building',
      scope_only_me: 'Only me',
      tags_legend: 'Individual causes',
      tag_arrears: 'Payment arrears',
      tag_prepaid_empty: 'Prepaid meter empty',
      tag_own_appliance: 'Own appliance',
      tag_internal_wiring: 'Internal wiring',
      caller: 'Caller phone (optional)',
      notes: 'Notes (optional)',
      record_call: 'Record call',
      recording: 'Recording the call…',
      waiting_outcome: 'Call {id} recorded; waiting for the correlator…',
      outcome_joined: 'Joined incident {id}',
      outcome_pending: 'Waiting for more reports (pending)',
      outcome_individual: 'Logged as an individual repair',
      outcome_unknown: 'Call {id} is recorded; no outcome yet. Check the board later.',

      board_page_title: 'Shift board - outage-correlator',
      board_title: 'Shift board',
      live_connecting: 'Connecting',
      live_connected: 'Live',
      live_reconnecting: 'Reconnecting…',
      catching_up: 'Catching up: {n} events behind. Answers may be a little late.',
      alert_covers: 'one message for {n} alerts',
      active_incidents: 'Active incidents',
      col_state: 'State',
      col_place: 'Place',
      col_cause: 'Cause',
      col_etr: 'ETR',
      col_calls: 'Calls',
      col_customers: 'Customers',
      col_updated: 'Last change',
      col_actions: 'Actions',
      no_incidents: 'No active incidents.',
      state_suspected: 'Suspected',
      state_predicted: 'Predicted',
      state_confirmed: 'Confirmed',
      state_stale: 'Stale',
      planned: 'planned',
      owner: 'Owner: {name}',
      acknowledge: 'Acknowledge',
      cause_button: 'Cause',
      etr_button: 'ETR',
      resolve: 'Resolve',
      timeline: 'Timeline',
      new_cause: 'Cause for {id}',
      new_etr: 'Expected restoration for {id} (local time)',
      resolve_note: 'Note on resolving {id} (optional)',
      resolve_confirm: 'Resolve now',
      invalid_etr: 'Give a valid date and time.',
      cause_required: 'Give the cause.',
      done_acknowledge: 'Incident {id} acknowledged.',
      done_cause: 'Cause recorded for incident {id}.',
      done_etr: 'Expected restoration recorded for incident {id}.',
      done_resolve: 'Incident {id} resolved.',
      action_failed: 'Incident {id}: {reason}',
      timeline_title: 'Timeline',
      timeline_pick: 'Pick Timeline on a row to see its history.',
      timeline_for: 'Incident {id}, newest first',
      timeline_shown: 'Timeline of incident {id} shown.',
      map_title: 'Map',
      map_label: 'Active incidents by location; bigger circles affect more customers.',
      map_empty: 'No active incident has a location.',
      map_point: '{place}: {n} customers ({state})',
      alerts_title: 'Alerts',
      alerts_empty: 'No alerts sent yet.',
      alert_line: '{status}: {receiver} via {channel}',
      alert_delivered: 'delivered',
      alert_failed: 'failed',
      alert_silenced: 'silenced',
      handover_title: 'Shift handover',
      handover_empty: 'The handover report is empty.',
    },
    zh: {
      app_name: '停电关联系统',
      skip_to_main: '跳到主要内容',
      nav_label: '页面',
      nav_console: '坐席台',
      nav_board: '值班看板',
      language: '语言',
      lang_en: 'English',
      lang_zh: '中文',
      logged_in_as: '当前用户：{name}',
      logout: '退出登录',
      network_error: '无法连接服务：请检查网络后重试。',
      session_expired: '登录已过期：请重新登录。',
      error: '错误：{reason}',
      loading: '加载中…',
      refresh: '刷新',
      save: '保存',
      cancel: '取消',

      console_page_title: '坐席台 - 停电关联系统',
      console_title: '坐席台',
      lookup_title: '查询地点',
      search_label: '地址、用户号、楼栋号或电话',
      search_button: '查询',
      search_hint: '输入至少 2 个字符显示建议；用方向键和回车选择。',
      suggestions_label: '建议',
      searching: '正在查询…',
      search_empty: '请输入地址、用户号、楼栋号或电话号码。',
      not_found: '未找到该地点：{reason}',
      did_you_mean: '您是否要找：',
      known_fault: '已知故障',
      no_known_fault: '此处无已知故障：请登记个别报修',
      planned_work: '计划检修',
      cause: '原因',
      cause_unknown: '暂未查明',
      since: '开始时间',
      etr: '预计恢复',
      etr_unknown: '暂无',
      neighbours_called: '已有 {n} 位邻居来电',
      customers_affected: '影响 {n} 户',
      incident_id: '事件 {id}',
      read_to_caller: '向来电者宣读',
      call_title: '登记来电',
      call_place: '地点：{place}',
      search_first: '请先查询地点。',
      symptom: '症状',
      symptom_no_heat: '不供暖',
      symptom_low_pressure: '压力低',
      symptom_no_hot_water: '无热水',
      symptom_no_power: '停电',
      symptom_flicker: '电压不稳（闪烁）',
      symptom_no_signal: '无信号',
      symptom_other: '其他',
      scope: '影响范围',
      scope_whole_building: '整栋楼',
      scope_only_me: '仅本户',
      tags_legend: '个别原因',
      tag_arrears: '欠费',
      tag_prepaid_empty: '预付费余额不足',
      tag_own_appliance: '自家设备故障',
      tag_internal_wiring: '户内线路问题',
      caller: '来电号码（可选）',
      notes: '备注（可选）',
      record_call: '登记来电',
      recording: '正在登记…',
      waiting_outcome: '来电 {id} 已登记，等待关联结果…',
      outcome_joined: '已并入事件 {id}',
      outcome_pending: '等待更多报告（待定）',
      outcome_individual: '已登记为个别报修',
      outcome_unknown: '来电 {id} 已登记，暂无结果，请稍后在看板查看。',

      board_page_title: '值班看板 - 停电关联系统',
      board_title: '值班看板',
      live_connecting: '连接中',
      live_connected: '实时',
      live_reconnecting: '正在重新连接…',
      catching_up: '正在追赶：积压 {n} 条事件，结果可能稍有延迟。',
      alert_covers: '一条消息，含 {n} 条告警',
      active_incidents: '进行中的事件',
      col_state: '状态',
      col_place: '位置',
      col_cause: '原因',
      col_etr: '预计恢复',
      col_calls: '来电',
      col_customers: '用户数',
      col_updated: '最后变化',
      col_actions: '操作',
      no_incidents: '没有进行中的事件。',
      state_suspected: '疑似',
      state_predicted: '预测',
      state_confirmed: '已确认',
      state_stale: '无新报告',
      planned: '计划',
      owner: '负责人：{name}',
      acknowledge: '确认接手',
      cause_button: '原因',
      etr_button: '预计恢复',
      resolve: '关闭',
      timeline: '时间线',
      new_cause: '事件 {id} 的原因',
      new_etr: '事件 {id} 的预计恢复时间（本地时间）',
      resolve_note: '关闭事件 {id} 的备注（可选）',
      resolve_confirm: '立即关闭',
      invalid_etr: '请输入有效的日期和时间。',
      cause_required: '请填写原因。',
      done_acknowledge: '事件 {id} 已确认接手。',
      done_cause: '事件 {id} 的原因已记录。',
      done_etr: '事件 {id} 的预计恢复时间已记录。',
      done_resolve: '事件 {id} 已关闭。',
      action_failed: '事件 {id}：{reason}',
      timeline_title: '时间线',
      timeline_pick: '点击某行的“时间线”查看其经过。',
      timeline_for: '事件 {id}，最新在前',
      timeline_shown: '已显示事件 {id} 的时间线。',
      map_title: '地图',
      map_label: '按位置显示的进行中事件；圆越大影响用户越多。',
      map_empty: '没有带位置的进行中事件。',
      map_point: '{place}：{n} 户（{state}）',
      alerts_title: '告警通知',
      alerts_empty: '尚未发送告警。',
      alert_line: '{status}：{receiver}（{channel}）',
      alert_delivered: '已送达',
      alert_failed: '发送失败',
      alert_silenced: '已静默',
      handover_title: '交接班报告',
      handover_empty: '交接班报告为空。',
    },
  };

  const STORE_KEY = 'outage.lang';
  const listeners = [];

  function initial() {
    try {
      const saved = window.localStorage.getItem(STORE_KEY);
      if (saved && DICT[saved]) return saved;
    } catch (_) { /* storage blocked: fall back to the browser's language */ }
    return (navigator.language || '').toLowerCase().startsWith('zh') ? 'zh' : 'en';
  }

  let lang = initial();

  /** The label for key in the current language, with {name} placeholders filled in. */
  function t(key, vars) {
    const text = DICT[lang][key] ?? DICT.en[key] ?? key;
    if (!vars) return text;
    return text.replace(/\{(\w+)\}/g, (whole, name) => (name in vars ? String(vars[name]) : whole));
  }

  /** Fill every element marked data-i18n (text) or data-i18n-aria-label / -title. */
  function apply(root = document) {
    document.documentElement.lang = lang;
    for (const node of root.querySelectorAll('[data-i18n]')) {
      node.textContent = t(node.dataset.i18n, node.dataset.i18nVars ? JSON.parse(node.dataset.i18nVars) : undefined);
    }
    for (const node of root.querySelectorAll('[data-i18n-aria-label]')) {
      node.setAttribute('aria-label', t(node.dataset.i18nAriaLabel));
    }
    for (const node of root.querySelectorAll('[data-i18n-title]')) {
      node.setAttribute('title', t(node.dataset.i18nTitle));
    }
    const select = document.getElementById('lang');
    if (select) select.value = lang;
  }

  function setLang(next) {
    if (!DICT[next] || next === lang) return;
    lang = next;
    try { window.localStorage.setItem(STORE_KEY, lang); } catch (_) { /* not remembered */ }
    apply();
    for (const listener of listeners) listener(lang);
  }

  window.I18N = {
    DICT,
    t,
    apply,
    setLang,
    onChange: (listener) => listeners.push(listener),
    get lang() { return lang; },
  };

  // ---- shared page helpers ------------------------------------------------------------------

  let csrf = '';
  let resolveMe;
  const meReady = new Promise((resolve) => { resolveMe = resolve; });

  /** Call the API: {ok, status, data (JSON or null), text, error (the reason to show)}. */
  async function api(method, path, body) {
    const options = { method, credentials: 'same-origin', headers: {} };
    if (method !== 'GET') {
      await meReady;
      options.headers['content-type'] = 'application/json';
      options.headers['X-CSRF-Token'] = csrf;
      options.body = JSON.stringify(body || {});
    }
    let response;
    try {
      response = await fetch(path, options);
    } catch (_) {
      return { ok: false, status: 0, data: null, text: '', error: t('network_error') };
    }
    const type = response.headers.get('content-type') || '';
    let data = null;
    let text = '';
    try {
      if (type.includes('json')) data = await response.json();
      else text = await response.text();
    } catch (_) { /* an empty or broken body: the status says enough */ }
    let error = null;
    if (!response.ok) {
      error = (data && typeof data.error === 'string' && data.error) || text.trim() || `HTTP ${response.status}`;
      if (response.status === 401) error = t('session_expired');
    }
    return { ok: response.ok, status: response.status, data, text, error };
  }

  /** A local date and time for an ISO timestamp ('' for none). */
  function time(iso, withDate = true) {
    if (!iso) return '';
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return String(iso);
    const options = { hour: '2-digit', minute: '2-digit', hour12: false };
    if (withDate) Object.assign(options, { month: 'short', day: 'numeric' });
    return date.toLocaleString(lang === 'zh' ? 'zh-CN' : 'en-GB', options);
  }

  /** A DOM element: el('p', {class: 'x', 'data-y': 1}, 'text', child). Text is never HTML. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === 'text') node.textContent = value;
      else node.setAttribute(name, value === true ? '' : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  async function loadMe() {
    const who = document.getElementById('who');
    const result = await api('GET', '/v1/me');
    if (result.ok && result.data) {
      csrf = result.data.csrf_token || '';
      const hidden = document.getElementById('logout-csrf');
      if (hidden && csrf) hidden.value = csrf;
      if (who) {
        who.dataset.name = result.data.name || '';
        who.textContent = t('logged_in_as', { name: who.dataset.name });
      }
      // The board needs a shift lead's rights: agents would only get a 403 there.
      const roles = result.data.roles || [];
      const board = document.getElementById('nav-board');
      if (board && !roles.includes('shift_lead')) board.hidden = true;
    }
    resolveMe(result);
    return result;
  }

  function labelWho() {
    const who = document.getElementById('who');
    if (who && who.dataset.name) who.textContent = t('logged_in_as', { name: who.dataset.name });
  }

  window.App = { api, time, el, me: meReady, sleep: (ms) => new Promise((r) => setTimeout(r, ms)) };

  // Scripts are deferred: the document is parsed when this runs.
  apply();
  labelWho();
  listeners.push(labelWho);
  const select = document.getElementById('lang');
  if (select) select.addEventListener('change', () => setLang(select.value));
  loadMe();
})();
