// The live page: polls GET /v1/stats twice a second with the read token and turns successive
// samples into rates. Plain DOM and SVG, no build step, no library. Pool and item ids come
// from users of the engine, so they only ever reach the page through textContent.
const kPollMs = 500;
const kHistory = 60; // samples in the sparkline: half a minute
const kTokenKey = 'rpe-dashboard-token';

const $ = (id) => document.getElementById(id);
const nf = new Intl.NumberFormat('en-US');
const compact = new Intl.NumberFormat('en-US', { notation: 'compact', maximumFractionDigits: 2 });

let token = sessionStorage.getItem(kTokenKey) ?? '';
let previous = null;
let timer = null;
const history = [];

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

function rate(now, before, field, seconds) {
  return before === null || seconds <= 0 ? null : Math.max(0, now[field] - before[field]) / seconds;
}

/** Milliseconds per sync over the interval (or since start when nothing synced in between). */
function syncLatency(now, before) {
  const syncs = now.syncs - (before?.syncs ?? 0);
  const ms = now.syncTimeMs - (before?.syncTimeMs ?? 0);
  if (syncs > 0) return ms / syncs;
  return now.syncs > 0 ? now.syncTimeMs / now.syncs : null;
}

const fmtRate = (r) => (r === null ? '–' : compact.format(Math.round(r)));
const fmtMs = (ms) => (ms === null ? '–' : ms < 1 ? `${(ms * 1000).toFixed(0)} µs` : `${ms.toFixed(2)} ms`);

function setStatus(text, kind) {
  const s = $('status');
  s.textContent = text;
  s.className = `status ${kind ?? ''}`;
}

function showLogin(message) {
  $('login').hidden = false;
  $('board').hidden = true;
  $('forget').hidden = true;
  $('login-error').textContent = message ?? '';
  $('token').focus();
}

function drawSpark() {
  const svg = $('spark');
  const max = Math.max(1, ...history);
  const step = 240 / (kHistory - 1);
  const offset = kHistory - history.length;
  const points = history.map((v, i) => `${((offset + i) * step).toFixed(1)},${(46 - (v / max) * 44).toFixed(1)}`).join(' ');
  let line = svg.querySelector('polyline');
  if (!line) line = svg.appendChild(document.createElementNS('http://www.w3.org/2000/svg', 'polyline'));
  line.setAttribute('points', points);
}

function renderShards(stats, before, seconds) {
  const body = $('shards').tBodies[0];
  const rows = stats.engine.shards.map((s, k) => {
    const b = before?.engine.shards[k] ?? null;
    const tr = el('tr');
    const cells = [
      String(k),
      fmtRate(rate(s, b, 'draws', seconds)),
      nf.format(s.draws),
      fmtMs(syncLatency(s, b)),
      fmtRate(rate(s, b, 'syncs', seconds)),
      nf.format(s.pending),
      nf.format(s.restarts),
    ];
    for (const c of cells) tr.append(el('td', '', c));
    tr.append(el('td', s.failed ? 'failed' : 'running', s.failed ? 'failed' : 'running'));
    tr.dataset.shard = String(k);
    return tr;
  });
  body.replaceChildren(...rows);
}

function renderPools(stats) {
  $('pool-count').textContent = stats.poolCount > stats.pools.length ? `(${stats.pools.length} of ${nf.format(stats.poolCount)} shown)` : `(${stats.poolCount})`;
  const cards = stats.pools.map((p) => {
    const card = el('div', 'pool');
    card.dataset.pool = p.id;
    card.append(el('h3', '', p.id));
    card.append(el('div', 'dim', `last request id ${nf.format(p.lastRequestId)}`));
    for (const item of p.items) {
      const row = el('div', 'item');
      row.append(el('span', 'name', item.id));
      const unlimited = item.quantity === -1;
      const bar = el('div', unlimited ? 'bar unlimited' : 'bar');
      const fill = el('span');
      // Stock left out of what the item ever had (left + drawn): a bar that empties as it is drawn.
      if (!unlimited) fill.style.width = `${((item.quantity / Math.max(1, item.quantity + item.drawn)) * 100).toFixed(1)}%`;
      bar.append(fill);
      row.append(bar);
      const qty = el('span', 'qty', `${unlimited ? '∞' : nf.format(item.quantity)} · ${compact.format(item.drawn)} drawn`);
      qty.dataset.quantity = String(item.quantity);
      row.append(qty);
      card.append(row);
    }
    return card;
  });
  $('pools').replaceChildren(...cards);
}

function render(stats) {
  const before = previous;
  const seconds = before === null ? 0 : (stats.at - before.at) / 1000;
  const e = stats.engine;
  const drawsRate = rate(e, before?.engine ?? null, 'draws', seconds);
  if (drawsRate !== null) {
    history.push(drawsRate);
    if (history.length > kHistory) history.shift();
  }
  $('draws-rate').textContent = fmtRate(drawsRate);
  $('draws-total').textContent = nf.format(e.draws);
  $('empty-total').textContent = `${nf.format(e.emptyDraws)} empty`;
  $('sync-latency').textContent = fmtMs(syncLatency(e, before?.engine ?? null));
  $('syncs-rate').textContent = `${fmtRate(rate(e, before?.engine ?? null, 'syncs', seconds))} syncs/s`;
  $('pending').textContent = nf.format(e.pending);
  $('wal-rate').textContent = `WAL ${fmtRate(rate(e, before?.engine ?? null, 'walBytes', seconds))} B/s`;
  $('restarts').textContent = nf.format(e.restarts);
  $('uptime').textContent = `up ${Math.round(stats.uptimeSeconds)} s`;
  renderShards(stats, before, seconds);
  renderPools(stats);
  drawSpark();
  $('updated').textContent = `updated ${new Date(stats.at).toLocaleTimeString()}`;
  previous = stats;
}

async function poll() {
  timer = null;
  try {
    const res = await fetch('/v1/stats', { headers: token ? { authorization: `Bearer ${token}` } : {}, cache: 'no-store' });
    if (res.status === 401 || res.status === 403) {
      const problem = await res.json().catch(() => ({}));
      const hadToken = token !== '';
      sessionStorage.removeItem(kTokenKey);
      token = '';
      previous = null;
      setStatus(hadToken ? 'token refused' : 'token needed', 'bad');
      showLogin(hadToken ? (problem.detail ?? `HTTP ${res.status}`) : '');
      return;
    }
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const stats = await res.json();
    $('login').hidden = true;
    $('board').hidden = false;
    $('forget').hidden = token === '';
    setStatus('live', 'ok');
    render(stats);
  } catch (err) {
    setStatus(`unreachable (${err.message})`, 'bad');
  }
  timer = setTimeout(poll, kPollMs);
}

$('login').addEventListener('submit', (event) => {
  event.preventDefault();
  token = $('token').value.trim();
  $('token').value = '';
  sessionStorage.setItem(kTokenKey, token);
  if (timer !== null) clearTimeout(timer);
  void poll();
});

$('forget').addEventListener('click', () => {
  sessionStorage.removeItem(kTokenKey);
  token = '';
  if (timer !== null) clearTimeout(timer);
  showLogin();
});

// With a stored token (or a server without keys) the page starts polling at once; a refusal
// brings up the form.
void poll();
