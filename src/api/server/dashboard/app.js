// wasmdyno's dashboard: plain JavaScript over the platform's own API, authenticated by the session cookie that
// logging in set. Every change sends the session's CSRF token. Data goes into the page as text, never as HTML.
'use strict';

const state = { csrf: null, appUrl: null, app: null, reveal: false, logs: null, timer: null };
const $ = (id) => document.getElementById(id);

async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET') headers['X-CSRF-Token'] = state.csrf;
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
  });
  if (response.status === 401) {
    showLogin();
    throw new Error('logged out');
  }
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) throw new Error((data && data.message) || `${method} ${path}: ${response.status}`);
  return data;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null) node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function table(id, head, rows) {
  const t = $(id);
  t.replaceChildren(el('tr', {}, ...head.map((h) => el('th', {}, h))), ...rows);
}

function report(error) {
  if (error.message !== 'logged out') alert(error.message);
}

// --- Logging in and out ---

function showLogin() {
  state.csrf = null;
  stopTimers();
  $('dashboard').hidden = true;
  $('logout').hidden = true;
  $('login').hidden = false;
}

async function showDashboard(session) {
  state.csrf = session.csrf;
  state.appUrl = session.app_url;
  $('login').hidden = true;
  $('dashboard').hidden = false;
  $('logout').hidden = false;
  await loadApps();
}

$('login-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  $('login-error').textContent = '';
  const response = await fetch('/dashboard/session', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ token: $('token').value }),
    credentials: 'same-origin',
  });
  const data = await response.json();
  if (!response.ok) {
    $('login-error').textContent = data.message;
    return;
  }
  $('token').value = '';
  await showDashboard(data);
});

$('logout').addEventListener('click', async () => {
  await fetch('/dashboard/session', { method: 'DELETE', credentials: 'same-origin' });
  showLogin();
});

// --- Apps ---

async function loadApps() {
  const apps = await api('GET', '/apps');
  $('apps').replaceChildren(
    ...apps.map((app) =>
      el('li', {}, el('a', {
        href: `#${app.name}`,
        'data-app': app.name,
        class: app.name === state.app ? 'current' : null,
        onclick: (e) => { e.preventDefault(); openApp(app.name).catch(report); },
      }, app.name)),
    ),
  );
  const wanted = decodeURIComponent(location.hash.slice(1));
  if (!state.app && apps.some((a) => a.name === wanted)) await openApp(wanted);
}

function stopTimers() {
  if (state.timer) clearInterval(state.timer);
  state.timer = null;
  if (state.logs) state.logs.abort();
  state.logs = null;
}

async function openApp(name) {
  stopTimers();
  state.app = name;
  location.hash = name;
  for (const a of document.querySelectorAll('#apps a')) a.classList.toggle('current', a.dataset.app === name);
  $('app').hidden = false;
  $('app-name').textContent = name;
  const url = state.appUrl ? state.appUrl.replace('{app}', name) : '';
  $('app-url').textContent = url;
  $('app-url').href = url || '#';
  $('logs').textContent = '';
  await Promise.all([loadFormation(), loadDynos(), loadReleases(), loadConfig(), loadExtras(), loadMetrics()]);
  tailLogs();
  state.timer = setInterval(() => {
    Promise.all([loadDynos(), loadMetrics()]).catch(() => {});
  }, 2000);
}

async function loadFormation() {
  const app = state.app;
  const formation = await api('GET', `/apps/${app}/formation`);
  table('formation', ['type', 'command', 'dynos', 'size', ''], formation.map((f) => {
    const quantity = el('input', { type: 'number', min: 0, max: 100, value: f.quantity, 'aria-label': `${f.type} dynos`, 'data-type': f.type, class: 'quantity' });
    const size = el('select', { 'aria-label': `${f.type} size` },
      ...['eco', 'basic', 'standard-1x', 'standard-2x', 'performance-m', 'performance-l']
        .map((s) => el('option', s === f.size ? { selected: '' } : {}, s)));
    const scale = el('button', {
      class: 'scale',
      'data-type': f.type,
      onclick: async () => {
        await api('PATCH', `/apps/${app}/formation/${f.type}`, { quantity: Number(quantity.value), size: size.value });
        await Promise.all([loadFormation(), loadDynos()]);
      },
    }, 'Scale');
    return el('tr', {}, el('td', {}, f.type), el('td', {}, el('code', {}, f.command || '')), el('td', {}, quantity),
      el('td', {}, size), el('td', {}, scale));
  }));
}

async function loadDynos() {
  const dynos = await api('GET', `/apps/${state.app}/dynos`);
  dynos.sort((a, b) => a.name.localeCompare(b.name));
  table('dynos', ['dyno', 'state', 'memory', 'restarts', ''], dynos.map((d) =>
    el('tr', { 'data-dyno': d.name },
      el('td', {}, d.name + (d.host ? ` (${d.host.slice(0, 8)})` : '')),
      el('td', { class: `state-${d.state}` }, d.state),
      el('td', { class: 'num' }, `${(d.memory_bytes / 1048576).toFixed(1)} MiB`),
      el('td', { class: 'num' }, d.restarts),
      el('td', {}, el('button', {
        class: 'secondary',
        onclick: () => api('DELETE', `/apps/${state.app}/dynos/${d.name}`).then(loadDynos).catch(report),
      }, 'Restart')))));
}

async function loadReleases() {
  const app = state.app;
  const releases = await api('GET', `/apps/${app}/releases`);
  releases.sort((a, b) => b.version - a.version);
  const current = releases.find((r) => r.status === 'succeeded');
  $('app-release').textContent = current ? `current release v${current.version}` : 'no release yet';
  table('releases', ['version', 'description', 'status', 'when', ''], releases.slice(0, 20).map((r) =>
    el('tr', { 'data-version': r.version },
      el('td', {}, `v${r.version}`),
      el('td', {}, r.description),
      el('td', { class: `state-${r.status}` }, r.status),
      el('td', {}, new Date(r.created_at * 1000).toLocaleString()),
      el('td', {}, r === current || r.status !== 'succeeded' ? '' : el('button', {
        class: 'secondary rollback',
        onclick: async () => {
          if (!confirm(`Roll ${app} back to v${r.version}?`)) return;
          await api('POST', `/apps/${app}/releases`, { release: r.version, rollback: true });
          await Promise.all([loadReleases(), loadConfig()]);
        },
      }, `Roll back to v${r.version}`)))));
}

async function loadConfig() {
  const config = await api('GET', `/apps/${state.app}/config-vars`);
  table('config', ['name', 'value'], Object.entries(config).map(([k, v]) =>
    el('tr', {}, el('td', {}, el('code', {}, k)), el('td', {}, state.reveal ? v : '••••••••'))));
}

$('reveal').addEventListener('click', () => {
  state.reveal = !state.reveal;
  $('reveal').textContent = state.reveal ? 'Hide' : 'Show';
  loadConfig().catch(report);
});

async function loadExtras() {
  const app = state.app;
  const [addons, domains, drains] = await Promise.all([
    api('GET', `/apps/${app}/addons`), api('GET', `/apps/${app}/domains`), api('GET', `/apps/${app}/log-drains`),
  ]);
  const rows = [
    ...addons.map((a) => el('tr', {}, el('td', {}, 'add-on'), el('td', {}, `${a.name} (${a.service || a.plan || ''})`))),
    ...domains.map((d) => el('tr', {}, el('td', {}, 'domain'), el('td', {}, d.hostname || d))),
    ...drains.map((d) => el('tr', {}, el('td', {}, 'drain'), el('td', {}, d.url || d.token || ''))),
  ];
  table('extras', ['kind', ''], rows.length ? rows : [el('tr', {}, el('td', { colspan: 2 }, 'none'))]);
}

// --- Metrics, drawn on canvases ---

function chart(id, series, colors) {
  const canvas = $(id);
  const ctx = canvas.getContext('2d');
  const { width, height } = canvas;
  ctx.clearRect(0, 0, width, height);
  const max = Math.max(1, ...series.flat());
  ctx.fillStyle = '#6b6880';
  ctx.font = '10px system-ui';
  ctx.fillText(String(Math.round(max * 100) / 100), 4, 10);
  series.forEach((points, i) => {
    ctx.strokeStyle = colors[i];
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    points.forEach((value, x) => {
      const px = points.length < 2 ? width / 2 : (x / (points.length - 1)) * (width - 8) + 4;
      const py = height - 4 - (value / max) * (height - 16);
      if (x === 0) ctx.moveTo(px, py); else ctx.lineTo(px, py);
    });
    ctx.stroke();
    ctx.fillStyle = colors[i];
    points.forEach((value, x) => {
      const px = points.length < 2 ? width / 2 : (x / (points.length - 1)) * (width - 8) + 4;
      const py = height - 4 - (value / max) * (height - 16);
      ctx.beginPath();
      ctx.arc(px, py, 2.5, 0, 2 * Math.PI);
      ctx.fill();
    });
  });
  canvas.dataset.points = JSON.stringify(series);
}

async function loadMetrics() {
  const metrics = await api('GET', `/apps/${state.app}/metrics?minutes=30`);
  const web = metrics.types.find((t) => t.process_type === 'web') || { minutes: [] };
  const minutes = [...web.minutes].reverse();
  chart('chart-throughput', [
    minutes.map((m) => m.requests[1]), minutes.map((m) => m.requests[3]), minutes.map((m) => m.requests[4]),
  ], ['#1e8449', '#d68910', '#c0392b']);
  chart('chart-latency', [minutes.map((m) => m.p50_ms), minutes.map((m) => m.p95_ms), minutes.map((m) => m.p99_ms)],
    ['#2e86c1', '#6f42c1', '#c0392b']);
  chart('chart-memory', [
    metrics.dynos.map((d) => d.memory_bytes / 1048576), metrics.dynos.map((d) => d.memory_peak_bytes / 1048576),
  ], ['#6f42c1', '#aaa']);
  const errors = {};
  for (const t of metrics.types) for (const m of t.minutes) for (const [code, n] of Object.entries(m.errors)) errors[code] = (errors[code] || 0) + n;
  $('errors').textContent = Object.keys(errors).length
    ? 'Router errors: ' + Object.entries(errors).map(([c, n]) => `${c} ×${n}`).join(', ')
    : 'No router errors.';
  $('chart-throughput').dataset.total = String(minutes.reduce((sum, m) => sum + m.requests.reduce((a, b) => a + b, 0), 0));
}

// --- Logs, live ---

async function tailLogs() {
  if (state.logs) state.logs.abort();
  const controller = new AbortController();
  state.logs = controller;
  const body = { tail: true, lines: 100 };
  const ps = $('log-ps').value.trim();
  if (ps) body.ps = ps;
  if ($('log-source').value) body.source = $('log-source').value;
  const pre = $('logs');
  pre.textContent = '';
  try {
    const session = await api('POST', `/apps/${state.app}/log-sessions`, body);
    const response = await fetch(session.logplex_url, { credentials: 'same-origin', signal: controller.signal });
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let pending = '';
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      pending += value;
      const lines = pending.split('\n');
      pending = lines.pop();
      for (const line of lines) {
        if (!line.trim()) continue;
        const l = JSON.parse(line);
        pre.append(`${l.timestamp} ${l.source}[${l.dyno}]: ${l.text}\n`);
      }
      while (pre.childNodes.length > 1500) pre.firstChild.remove();
      pre.scrollTop = pre.scrollHeight;
    }
  } catch (e) {
    if (e.name !== 'AbortError') pre.append(`(the log stream ended: ${e.message})\n`);
  }
}

$('log-filters').addEventListener('submit', (event) => {
  event.preventDefault();
  tailLogs();
});

// --- Start: a session from an earlier visit, or the login form ---

fetch('/dashboard/session', { credentials: 'same-origin' })
  .then(async (response) => (response.ok ? showDashboard(await response.json()) : showLogin()))
  .catch(showLogin);
