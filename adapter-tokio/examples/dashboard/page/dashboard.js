// The live dashboard of the eventwire demo: one ES module, no build step, no libraries.
//
// State model (normative rules in the demo's contract, "The snapshot"):
// - the page starts from a consistent {state, positions} pair: the one saved in sessionStorage by
//   the previous load of this tab, or else `GET /api/snapshot`;
// - it subscribes with `from` = those positions, so no event is counted twice or missed;
// - every event goes through one reducer (`reduce`), the same rules as the server's snapshot;
// - on a gap it fetches the snapshot again, buffers the events that arrive meanwhile, replaces
//   its state and re-applies the buffered events that are newer than the snapshot;
// - it repaints on requestAnimationFrame, never per event.
import { Client } from './eventwire.js';

const ROOMS = ['agents', 'tasks', 'system'];
const STORAGE_KEY = 'eventwire.dashboard.v1';
const ALERTS_MAX = 50;
const HISTORY_MAX = 120;
const BUFFER_MAX = 5000;
const THROUGHPUT_WINDOW_S = 10;
const SAVE_INTERVAL_MS = 500;
const SNAPSHOT_RETRY_MS = [250, 500, 1000, 2000, 4000];
const SNAPSHOT_TIMEOUT_MS = 10_000;

// ---------------------------------------------------------------------------------------------
// State and the reducer

function emptyTasks() {
  return { queued: 0, running: 0, completed: 0, failed: 0 };
}

/** The page's state built from a snapshot (or a saved state: same shape). */
function stateFromSnapshot(snap) {
  const agents = new Map();
  for (const a of snap.agents || []) {
    agents.set(a.agent_id, {
      agent_id: a.agent_id,
      name: a.name ?? a.agent_id,
      agent_type: a.agent_type ?? '',
      status: a.status ?? 'idle',
      task: a.task ?? null,
      metrics: a.metrics ? { ...a.metrics } : null,
    });
  }
  const alerts = (snap.alerts || []).slice();
  // The snapshot lists alerts oldest first; the page keeps them newest first.
  if (!snap.alertsNewestFirst) alerts.reverse();
  return {
    epoch: snap.epoch,
    paused: !!snap.paused,
    agents,
    tasks: { ...emptyTasks(), ...(snap.tasks || {}) },
    alerts: alerts.slice(0, ALERTS_MAX),
    system: {
      performance: snap.system?.performance ?? null,
      status: snap.system?.status ?? null,
    },
  };
}

/** The JSON form of the state (the snapshot's shape, alerts newest first). */
function serializeState(s) {
  return {
    epoch: s.epoch,
    paused: s.paused,
    agents: [...s.agents.values()],
    tasks: { ...s.tasks },
    alerts: s.alerts,
    alertsNewestFirst: true,
    system: s.system,
  };
}

/** The task a status change names, from `details` as a JSON object or a list of {key, value}. */
function detailTask(details) {
  if (!details) return undefined;
  if (Array.isArray(details)) {
    const d = details.find((x) => x && x.key === 'task');
    return d ? d.value : undefined;
  }
  return typeof details === 'object' && 'task' in details ? details.task : undefined;
}

/**
 * Applies one event to the state. Returns what changed (for the repaint), or null when the kind
 * is not a dashboard event.
 */
function reduce(s, event) {
  const p = event.payload || {};
  switch (event.kind) {
    case 'task.queued':
      s.tasks.queued += 1;
      return 'tasks';
    case 'task.assigned':
      s.tasks.queued -= 1;
      s.tasks.running += 1;
      return 'tasks';
    case 'task.completed':
      s.tasks.running -= 1;
      s.tasks.completed += 1;
      return 'tasks';
    case 'task.failed':
      s.tasks.running -= 1;
      s.tasks.failed += 1;
      return 'tasks';
    case 'agent.created':
      if (!s.agents.has(p.agent_id)) {
        s.agents.set(p.agent_id, {
          agent_id: p.agent_id,
          name: p.name ?? p.agent_id,
          agent_type: p.agent_type ?? '',
          status: 'idle',
          task: null,
          metrics: null,
        });
      }
      return 'agents';
    case 'agent.deleted':
      s.agents.delete(p.agent_id);
      return 'agents';
    case 'agent.status_changed': {
      const a = s.agents.get(p.agent_id);
      if (!a) return 'agents';
      a.status = p.new_status;
      const task = detailTask(p.details);
      if (p.new_status === 'idle') a.task = null;
      else if (task !== undefined) a.task = task;
      return 'agents';
    }
    case 'agent.metrics': {
      const a = s.agents.get(p.agent_id);
      if (!a) return 'agents';
      a.metrics = {
        cpu_percent: p.cpu_percent,
        memory_mb: p.memory_mb,
        tasks_in_progress: p.tasks_in_progress,
        tasks_completed: p.tasks_completed,
        error_rate: p.error_rate,
      };
      return 'agents';
    }
    case 'system.alert':
      s.alerts.unshift({ offset: event.position.offset, level: p.level, source: p.source, message: p.message });
      if (s.alerts.length > ALERTS_MAX) s.alerts.length = ALERTS_MAX;
      return 'alerts';
    case 'system.performance':
      s.system.performance = { ...p };
      return 'system';
    case 'system.status':
      s.system.status = { ...p };
      return 'system';
    default:
      return null;
  }
}

// ---------------------------------------------------------------------------------------------
// The model: state, positions, gap recovery, persistence

let state = stateFromSnapshot({ epoch: 0, agents: [], tasks: emptyTasks(), alerts: [], system: {} });
/** Per room, the position of the last event reflected in `state`. */
let positions = {};
/** Per room, the position of the last event the client delivered (for the delivery check). */
let delivered = {};
let client = null;
let status = { state: 'connecting', transport: null, rtt: null, quality: 'good', eventsPerSecond: 0, attempt: 0, retryInMs: null, lastClose: null };
let displayState = 'connecting';
let everConnected = false;
let reconnects = 0;
let gaps = 0;
let snapshots = 0;
let restored = false;
let lastGap = null;
let gapAction = '';
let lastError = null;
let recovering = false;
let refetch = false;
let buffer = [];
let bufferOverflows = 0;
const offsets = { duplicates: 0, missing: 0, stale: 0, reapplied: 0 };
const history = { cpu: [], eps: [], connections: [], throughput: [] };
const completions = []; // [second, count] buckets of task.completed + task.failed
const dirty = new Set(['all']);

function copyPositions(p) {
  const out = {};
  for (const [room, pos] of Object.entries(p)) out[room] = { epoch: pos.epoch, offset: pos.offset };
  return out;
}

function pushHistory(perf) {
  if (!perf) return;
  const add = (arr, v) => {
    arr.push(Number(v) || 0);
    if (arr.length > HISTORY_MAX) arr.splice(0, arr.length - HISTORY_MAX);
  };
  add(history.cpu, perf.cpu_percent);
  add(history.eps, perf.events_per_sec);
  add(history.connections, perf.connections);
  markDirty('charts');
}

function countCompletion() {
  const sec = Math.floor(performance.now() / 1000);
  const last = completions[completions.length - 1];
  if (last && last[0] === sec) last[1] += 1;
  else completions.push([sec, 1]);
  while (completions.length && completions[0][0] <= sec - THROUGHPUT_WINDOW_S) completions.shift();
}

let throughputStart = performance.now();
function throughput() {
  const now = performance.now();
  const sec = Math.floor(now / 1000);
  let n = 0;
  for (const [s, c] of completions) if (s > sec - THROUGHPUT_WINDOW_S) n += c;
  const span = Math.min(THROUGHPUT_WINDOW_S, Math.max(1, (now - throughputStart) / 1000));
  return n / span;
}

/** Replaces the state with a snapshot (or a saved state) and its positions. */
function replaceState(snap, snapPositions) {
  state = stateFromSnapshot(snap);
  positions = copyPositions(snapPositions || {});
  markDirty('all');
}

/**
 * Checks the client's delivery of one event: within an epoch, offsets must increase (else a
 * duplicate), and in room `tasks` (nothing coalesced) they must be contiguous unless a gap came
 * first (else missing events).
 */
function checkDelivery(event) {
  const { room, position } = event;
  const d = delivered[room];
  if (d && d.epoch === position.epoch) {
    if (position.offset <= d.offset) {
      offsets.duplicates += 1;
      return;
    }
    if (room === 'tasks' && position.offset !== d.offset + 1) offsets.missing += position.offset - d.offset - 1;
  }
  delivered[room] = { epoch: position.epoch, offset: position.offset };
}

/**
 * Applies one event unless the state already reflects it (at or below the room's position, as
 * after a fresh snapshot).
 */
function applyEvent(event, replay) {
  const { room, position } = event;
  const pos = positions[room];
  if (pos && pos.epoch === position.epoch) {
    if (position.offset <= pos.offset) {
      offsets.stale += 1;
      return;
    }
  } else if (pos) {
    if (replay) {
      // A buffered event of another epoch than the snapshot's is not reflected by it: drop it
      // (a reset gap for that epoch makes the page fetch again).
      offsets.stale += 1;
      return;
    }
    // A new epoch without a reset gap first: resynchronise from the snapshot.
    startRecovery(room);
    buffer.push(event);
    return;
  }
  const what = reduce(state, event);
  positions[room] = { epoch: position.epoch, offset: position.offset };
  if (what) markDirty(what);
  if (event.kind === 'task.completed' || event.kind === 'task.failed') countCompletion();
  if (event.kind === 'system.performance') pushHistory(event.payload);
  if (event.kind === 'agent.status_changed' || event.kind === 'agent.metrics') markAgent(event.payload?.agent_id);
  scheduleSave();
}

function onEvent(_payload, event) {
  checkDelivery(event);
  if (recovering) {
    buffer.push(event);
    if (buffer.length > BUFFER_MAX) {
      // The snapshot in flight may predate these; drop the buffer and fetch again afterwards:
      // the next snapshot reflects every dropped event.
      buffer = [];
      bufferOverflows += 1;
      refetch = true;
    }
    return;
  }
  applyEvent(event, false);
}

function describeGap(gap) {
  const m = gap.missed || {};
  if (m.range) return `${gap.room}: missed ${m.range.epoch}:${m.range.first}–${m.range.last}`;
  if (m.reset) return `${gap.room}: reset → epoch ${m.reset.position.epoch} @${m.reset.position.offset}`;
  return `${gap.room}: ${JSON.stringify(m)}`;
}

function onGap(gap) {
  gaps += 1;
  // The gap names what will not be delivered: the delivery check restarts after it.
  delivered[gap.room] = null;
  lastGap = { ...gap, at: Date.now() };
  gapAction = 're-fetching snapshot…';
  markDirty('conn');
  startRecovery(gap.room);
}

function startRecovery(room) {
  if (recovering) {
    // A snapshot fetched before this gap may not cover it: fetch once more when it returns.
    refetch = true;
    return;
  }
  recovering = true;
  refetch = false;
  buffer = [];
  recover(room);
}

async function recover(room) {
  let attempt = 0;
  for (;;) {
    refetch = false;
    let snap;
    try {
      snap = await fetchSnapshot();
    } catch (err) {
      lastError = String(err);
      gapAction = `snapshot fetch failed (${lastError}); retrying`;
      markDirty('conn');
      await sleep(SNAPSHOT_RETRY_MS[Math.min(attempt++, SNAPSHOT_RETRY_MS.length - 1)]);
      continue;
    }
    if (refetch) continue; // a gap or a buffer overflow happened while it was in flight
    replaceState(snap, snap.positions);
    const pending = buffer;
    buffer = [];
    recovering = false;
    const staleBefore = offsets.stale;
    for (const event of pending) applyEvent(event, true);
    const reapplied = pending.length - (offsets.stale - staleBefore);
    offsets.reapplied += reapplied;
    const gapRoom = lastGap?.room ?? room;
    const p = snap.positions?.[gapRoom];
    gapAction = p ? `re-fetched snapshot at offset ${p.offset} (${gapRoom}, epoch ${p.epoch})` : 're-fetched snapshot';
    if (pending.length) gapAction += `; re-applied ${reapplied} of ${pending.length} buffered`;
    markDirty('conn');
    saveNow();
    return;
  }
}

async function fetchSnapshot() {
  const res = await fetch('/api/snapshot', { cache: 'no-store', signal: AbortSignal.timeout(SNAPSHOT_TIMEOUT_MS) });
  if (!res.ok) throw new Error(`GET /api/snapshot: HTTP ${res.status}`);
  const snap = await res.json();
  snapshots += 1;
  if (snap.system?.performance) pushHistory(snap.system.performance);
  return snap;
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

// Persistence: the page state and the positions it reflects, written together.

let saveTimer = null;
function saveNow() {
  if (saveTimer) {
    clearTimeout(saveTimer);
    saveTimer = null;
  }
  if (recovering || !Object.keys(positions).length) return; // the last saved pair stays valid
  try {
    sessionStorage.setItem(
      STORAGE_KEY,
      JSON.stringify({ version: 1, savedAt: Date.now(), state: serializeState(state), positions, history }),
    );
  } catch (err) {
    lastError = `sessionStorage: ${err}`;
  }
}

function scheduleSave() {
  if (!saveTimer) saveTimer = setTimeout(saveNow, SAVE_INTERVAL_MS);
}

function loadSaved() {
  let saved;
  try {
    saved = JSON.parse(sessionStorage.getItem(STORAGE_KEY) || 'null');
  } catch {
    return null;
  }
  if (!saved || saved.version !== 1 || !saved.state || !saved.positions) return null;
  // Same epoch: the saved state and every saved position belong to one run of the server.
  const epoch = saved.state.epoch;
  const rooms = Object.entries(saved.positions);
  if (!rooms.length || rooms.some(([, p]) => !p || p.epoch !== epoch || !Number.isFinite(p.offset))) return null;
  return saved;
}

const storage = {
  load: () => copyPositions(positions),
  save: () => scheduleSave(),
};

// ---------------------------------------------------------------------------------------------
// Connection status

function onStatus(s) {
  const prev = displayState;
  status = s;
  displayState = s.state === 'connected' && s.transport === 'polling' ? 'polling' : s.state;
  if (displayState === 'connected' || displayState === 'polling') {
    if (everConnected && prev !== 'connected' && prev !== 'polling') reconnects += 1;
    everConnected = true;
  }
  if (prev !== displayState) {
    window.dispatchEvent(
      new CustomEvent('dashboard:status', { detail: { from: prev, to: displayState, transport: s.transport, at: Date.now() } }),
    );
  }
  markDirty('conn');
}

// ---------------------------------------------------------------------------------------------
// Rendering (requestAnimationFrame, only what changed)

const $ = (id) => document.querySelector(`[data-testid="${id}"]`);
const el = {
  queued: $('tasks-queued'),
  running: $('tasks-running'),
  completed: $('tasks-completed'),
  failed: $('tasks-failed'),
  throughput: $('tasks-throughput'),
  connState: $('conn-state'),
  connTransport: $('conn-transport'),
  connRtt: $('conn-rtt'),
  connQuality: $('conn-quality'),
  connEps: $('conn-eps'),
  connReconnects: $('conn-reconnects'),
  connDot: document.querySelector('[data-conn-dot]'),
  connBox: $('connection'),
  lastGap: $('last-gap'),
  gapAction: $('gap-action'),
  pause: $('pause-button'),
  health: $('system-health'),
  uptime: $('system-uptime'),
  agentsOnline: $('system-agents-online'),
  tasksPending: $('system-tasks-pending'),
  memory: $('system-memory'),
  alerts: $('alerts'),
  alertsCount: $('alerts-count'),
  grid: $('agent-grid'),
  agentsSummary: $('agents-summary'),
  cpuValue: $('chart-cpu-value'),
  epsValue: $('chart-eps-value'),
  connValue: $('chart-conn-value'),
  charts: {
    cpu: document.querySelector('canvas[data-chart="cpu"]'),
    eps: document.querySelector('canvas[data-chart="eps"]'),
    connections: document.querySelector('canvas[data-chart="connections"]'),
    throughput: document.querySelector('canvas[data-chart="throughput"]'),
  },
};
document.querySelector('[data-throughput-window]').textContent = `(${THROUGHPUT_WINDOW_S}s)`;

const dirtyAgents = new Set();
let frame = 0;
function markDirty(what) {
  dirty.add(what);
  if (!frame) frame = requestAnimationFrame(render);
}
function markAgent(id) {
  if (id) dirtyAgents.add(id);
}

function setText(node, text) {
  const t = String(text);
  if (node.textContent !== t) node.textContent = t;
}

const fmt = new Intl.NumberFormat('en-US');
function num(n) {
  return fmt.format(n);
}

function formatUptime(s) {
  if (!Number.isFinite(s)) return '–';
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = Math.floor(s % 60);
  if (d) return `${d}d ${h}h ${m}m`;
  if (h) return `${h}h ${m}m ${sec}s`;
  if (m) return `${m}m ${sec}s`;
  return `${sec}s`;
}

function render() {
  frame = 0;
  const all = dirty.has('all');
  if (all || dirty.has('tasks')) renderTasks();
  if (all || dirty.has('agents')) renderAgents(all);
  if (all || dirty.has('alerts')) renderAlerts();
  if (all || dirty.has('system')) renderSystem();
  if (all || dirty.has('charts') || dirty.has('system')) renderCharts();
  if (all || dirty.has('conn')) renderConn();
  dirty.clear();
  dirtyAgents.clear();
}

function renderTasks() {
  const t = state.tasks;
  setText(el.queued, num(t.queued));
  setText(el.running, num(t.running));
  setText(el.completed, num(t.completed));
  setText(el.failed, num(t.failed));
  setText(el.throughput, throughput().toFixed(1));
}

const cards = new Map(); // agent_id -> {root, refs, key}

function makeCard(a) {
  const root = document.createElement('article');
  root.className = 'agent';
  root.dataset.testid = 'agent-card';
  root.dataset.agentId = a.agent_id;
  root.innerHTML = `
    <header><span class="agent-name"></span><span class="agent-status"></span></header>
    <div class="agent-task"></div>
    <div class="agent-cpu"><span class="bar"><span class="fill"></span></span><span class="cpu-value"></span></div>
    <dl class="agent-metrics">
      <div title="resident memory"><dt>mem</dt><dd class="mem"></dd></div>
      <div title="tasks completed"><dt>done</dt><dd class="done"></dd></div>
      <div title="error rate"><dt>err</dt><dd class="err"></dd></div>
    </dl>`;
  const q = (sel) => root.querySelector(sel);
  return {
    root,
    refs: {
      name: q('.agent-name'),
      status: q('.agent-status'),
      task: q('.agent-task'),
      fill: q('.fill'),
      cpu: q('.cpu-value'),
      mem: q('.mem'),
      done: q('.done'),
      err: q('.err'),
    },
    key: '',
  };
}

function paintCard(card, a) {
  const m = a.metrics;
  const key = `${a.status}|${a.task}|${m ? `${m.cpu_percent}|${m.memory_mb}|${m.tasks_completed}|${m.error_rate}` : ''}`;
  if (card.key === key) return;
  card.key = key;
  const r = card.refs;
  setText(r.name, a.name || a.agent_id);
  r.name.title = `${a.agent_id} · ${a.agent_type}`;
  setText(r.status, a.status);
  card.root.dataset.status = a.status;
  setText(r.task, a.task ?? (a.status === 'idle' ? 'waiting for work' : '—'));
  r.task.classList.toggle('none', !a.task);
  if (m) {
    const cpu = Number(m.cpu_percent) || 0;
    r.fill.style.width = `${Math.max(0, Math.min(100, cpu))}%`;
    r.fill.classList.toggle('hot', cpu >= 85);
    r.fill.classList.toggle('warm', cpu >= 60 && cpu < 85);
    setText(r.cpu, `${cpu.toFixed(0)}%`);
    setText(r.mem, `${(Number(m.memory_mb) || 0).toFixed(0)}M`);
    setText(r.done, num(m.tasks_completed));
    setText(r.err, `${((Number(m.error_rate) || 0) * 100).toFixed(0)}%`);
  } else {
    r.fill.style.width = '0%';
    setText(r.cpu, '–');
    setText(r.mem, '–');
    setText(r.done, '–');
    setText(r.err, '–');
  }
}

function renderAgents(all) {
  if (all || cards.size !== state.agents.size || [...state.agents.keys()].some((id) => !cards.has(id))) {
    // Membership changed: rebuild the order, keeping the existing cards.
    for (const [id, card] of cards) {
      if (!state.agents.has(id)) {
        card.root.remove();
        cards.delete(id);
      }
    }
    const ids = [...state.agents.keys()].sort();
    const frag = document.createDocumentFragment();
    for (const id of ids) {
      let card = cards.get(id);
      if (!card) {
        card = makeCard(state.agents.get(id));
        cards.set(id, card);
      }
      frag.appendChild(card.root);
    }
    el.grid.replaceChildren(frag);
    for (const id of ids) paintCard(cards.get(id), state.agents.get(id));
  } else {
    for (const id of dirtyAgents) {
      const card = cards.get(id);
      const a = state.agents.get(id);
      if (card && a) paintCard(card, a);
    }
  }
  const counts = {};
  for (const a of state.agents.values()) counts[a.status] = (counts[a.status] || 0) + 1;
  const parts = Object.entries(counts)
    .sort((x, y) => y[1] - x[1])
    .map(([k, v]) => `${v} ${k}`);
  setText(el.agentsSummary, `${state.agents.size} · ${parts.join(' · ')}`);
}

function renderAlerts() {
  const items = state.alerts.map((a) => {
    const li = document.createElement('li');
    li.className = `alert level-${a.level}`;
    li.dataset.offset = a.offset;
    const lvl = document.createElement('span');
    lvl.className = 'alert-level';
    lvl.textContent = a.level;
    const src = document.createElement('span');
    src.className = 'alert-source';
    src.textContent = a.source;
    const msg = document.createElement('span');
    msg.className = 'alert-message';
    msg.textContent = a.message;
    const off = document.createElement('span');
    off.className = 'alert-offset';
    off.textContent = `#${a.offset}`;
    li.append(lvl, src, msg, off);
    return li;
  });
  if (!items.length) {
    const li = document.createElement('li');
    li.className = 'alert empty';
    li.textContent = 'No alerts.';
    items.push(li);
  }
  el.alerts.replaceChildren(...items);
  setText(el.alertsCount, state.alerts.length);
}

function renderSystem() {
  const st = state.system.status;
  const perf = state.system.performance;
  const health = st ? st.status : 'unknown';
  setText(el.health, health);
  el.health.dataset.health = health;
  setText(el.uptime, st ? formatUptime(st.uptime_s) : '–');
  setText(el.agentsOnline, st ? num(st.agents_online) : '–');
  setText(el.tasksPending, st ? num(st.tasks_pending) : '–');
  setText(el.memory, perf ? `${perf.memory_percent.toFixed(1)}%` : '–');
  setText(el.cpuValue, perf ? `${perf.cpu_percent.toFixed(1)}%` : '–');
  setText(el.epsValue, perf ? perf.events_per_sec.toFixed(1) : '–');
  setText(el.connValue, perf ? num(perf.connections) : '–');
  setText(el.pause, state.paused ? 'Resume swarm' : 'Pause swarm');
  el.pause.dataset.paused = String(state.paused);
  el.pause.setAttribute('aria-pressed', String(state.paused));
}

const CHART_STYLE = {
  cpu: { line: '#4cc9f0', fill: 'rgba(76, 201, 240, 0.16)', max: 100 },
  eps: { line: '#a78bfa', fill: 'rgba(167, 139, 250, 0.16)', max: null },
  connections: { line: '#34d399', fill: 'rgba(52, 211, 153, 0.16)', max: null },
  throughput: { line: '#a78bfa', fill: 'rgba(167, 139, 250, 0.14)', max: null },
};

function drawSparkline(canvas, values, style) {
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(40, Math.round(canvas.clientWidth * dpr));
  const h = Math.max(20, Math.round(canvas.clientHeight * dpr));
  if (canvas.width !== w || canvas.height !== h) {
    canvas.width = w;
    canvas.height = h;
  }
  const ctx = canvas.getContext('2d');
  ctx.clearRect(0, 0, w, h);
  // Grid lines at 25% steps.
  ctx.strokeStyle = 'rgba(148, 163, 184, 0.12)';
  ctx.lineWidth = 1;
  for (let i = 1; i < 4; i++) {
    const y = Math.round((h * i) / 4) + 0.5;
    ctx.beginPath();
    ctx.moveTo(0, y);
    ctx.lineTo(w, y);
    ctx.stroke();
  }
  if (!values.length) return;
  const max = style.max ?? Math.max(1, ...values) * 1.15;
  const pad = 2 * dpr;
  // The line grows from the left over the first 40 points, then the x scale compresses up to
  // HISTORY_MAX points.
  const step = (w - pad * 2) / (Math.max(40, values.length) - 1);
  const x0 = pad;
  const y = (v) => h - pad - (Math.max(0, Math.min(max, v)) / max) * (h - pad * 2);
  ctx.beginPath();
  values.forEach((v, i) => (i ? ctx.lineTo(x0 + i * step, y(v)) : ctx.moveTo(x0, y(v))));
  ctx.lineWidth = 1.5 * dpr;
  ctx.strokeStyle = style.line;
  ctx.lineJoin = 'round';
  ctx.stroke();
  ctx.lineTo(x0 + (values.length - 1) * step, h);
  ctx.lineTo(x0, h);
  ctx.closePath();
  ctx.fillStyle = style.fill;
  ctx.fill();
  const lx = x0 + (values.length - 1) * step;
  ctx.beginPath();
  ctx.arc(lx, y(values[values.length - 1]), 2.2 * dpr, 0, Math.PI * 2);
  ctx.fillStyle = style.line;
  ctx.fill();
}

function renderCharts() {
  drawSparkline(el.charts.throughput, history.throughput, CHART_STYLE.throughput);
  drawSparkline(el.charts.cpu, history.cpu, CHART_STYLE.cpu);
  drawSparkline(el.charts.eps, history.eps, CHART_STYLE.eps);
  drawSparkline(el.charts.connections, history.connections, CHART_STYLE.connections);
}

function renderConn() {
  setText(el.connState, displayState);
  el.connBox.dataset.state = displayState;
  setText(el.connTransport, status.transport ?? '–');
  setText(el.connRtt, Number.isFinite(status.rtt) ? `${Math.round(status.rtt)} ms` : '–');
  setText(el.connQuality, status.quality ?? '–');
  el.connQuality.dataset.quality = status.quality ?? '';
  const eps = Number(status.eventsPerSecond);
  setText(el.connEps, Number.isFinite(eps) ? eps.toFixed(1) : '–');
  setText(el.connReconnects, reconnects);
  if (lastGap) {
    const ago = Math.round((Date.now() - lastGap.at) / 1000);
    setText(el.lastGap, `${describeGap(lastGap)} (${ago}s ago)`);
    el.lastGap.title = new Date(lastGap.at).toISOString();
  } else {
    setText(el.lastGap, 'none');
  }
  setText(el.gapAction, gapAction);
}

// A slow tick: throughput window, events/s and "ago" texts move even without events.
setInterval(() => {
  if (client) status = { ...status, ...pickStatus(client.status) };
  history.throughput.push(Number(throughput().toFixed(2)));
  if (history.throughput.length > HISTORY_MAX) history.throughput.splice(0, history.throughput.length - HISTORY_MAX);
  markDirty('charts');
  markDirty('tasks');
  markDirty('conn');
}, 1000);

function pickStatus(s) {
  return s && typeof s === 'object' ? { eventsPerSecond: s.eventsPerSecond, rtt: s.rtt, quality: s.quality } : {};
}

window.addEventListener('resize', () => markDirty('charts'));

// ---------------------------------------------------------------------------------------------
// Pause / resume

el.pause.addEventListener('click', async () => {
  const want = state.paused ? 'resume' : 'pause';
  el.pause.disabled = true;
  try {
    const res = await fetch(`/api/swarm/${want}`, { method: 'POST' });
    if (!res.ok) throw new Error(`POST /api/swarm/${want}: HTTP ${res.status}`);
    const body = await res.json();
    state.paused = !!body.paused;
  } catch (err) {
    lastError = String(err);
  } finally {
    el.pause.disabled = false;
    markDirty('system');
  }
});

// ---------------------------------------------------------------------------------------------
// The test and debugging surface: read-only.

function agentCopies() {
  return [...state.agents.values()].map((a) => ({ ...a, metrics: a.metrics ? { ...a.metrics } : null }));
}

Object.defineProperty(window, 'dashboard', {
  configurable: false,
  enumerable: true,
  writable: false,
  value: Object.freeze({
    get state() {
      return {
        epoch: state.epoch,
        paused: state.paused,
        tasks: { ...state.tasks },
        agents: agentCopies(),
        alerts: state.alerts.map((a) => ({ ...a })),
        system: JSON.parse(JSON.stringify(state.system)),
      };
    },
    get status() {
      return { ...status, display: displayState };
    },
    get gaps() {
      return gaps;
    },
    get snapshots() {
      return snapshots;
    },
    positions() {
      return copyPositions(positions);
    },
    get restored() {
      return restored;
    },
    get recovering() {
      return recovering;
    },
    get reconnects() {
      return reconnects;
    },
    get lastGap() {
      return lastGap ? JSON.parse(JSON.stringify(lastGap)) : null;
    },
    get offsets() {
      return { ...offsets, bufferOverflows };
    },
    get lastError() {
      return lastError;
    },
    get ready() {
      return client !== null;
    },
  }),
});

// ---------------------------------------------------------------------------------------------
// Start

function wsUrl() {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/`;
}

async function start() {
  markDirty('all');
  const saved = loadSaved();
  if (saved) {
    replaceState(saved.state, saved.positions);
    for (const k of Object.keys(history)) if (Array.isArray(saved.history?.[k])) history[k] = saved.history[k].slice(-HISTORY_MAX);
    restored = true;
    gapAction = 'resumed from sessionStorage';
  } else {
    for (let attempt = 0; ; attempt++) {
      try {
        const snap = await fetchSnapshot();
        replaceState(snap, snap.positions);
        break;
      } catch (err) {
        lastError = String(err);
        markDirty('conn');
        await sleep(SNAPSHOT_RETRY_MS[Math.min(attempt, SNAPSHOT_RETRY_MS.length - 1)]);
      }
    }
  }
  const rooms = {};
  for (const room of ROOMS) rooms[room] = positions[room] ? { ...positions[room] } : null;
  delivered = copyPositions(positions);
  client = new Client(wsUrl(), { rooms, storage });
  client.onStatus(onStatus);
  client.onGap(onGap);
  client.onError((err) => {
    lastError = `${err.name ?? 'error'} ${err.code ?? ''}: ${err.reason ?? ''}`;
    console.warn('eventwire error', err);
  });
  client.on('*', onEvent);
  if (client.status) onStatus(client.status);
  el.pause.disabled = false;
  saveNow();
}

window.addEventListener('pagehide', saveNow);
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'hidden') saveNow();
});

start();
