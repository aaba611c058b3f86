// Samizdat web UI: a client of the node's local API, served by the node itself.
// Plain ES module, no dependencies, no build step. Message content is only ever put in the page
// as text (textContent), never as HTML.

const PAGE = 50;
const AUTO_IMAGE_BYTES = 32 * 1024 * 1024;
const TEXT_LIMIT = { channel: 16 * 1024, dm: 4096, group: 4096 };
const RETRY_MS = 5000;
const MEDIA_TYPES = new Set([
  'image/png', 'image/jpeg', 'image/gif', 'image/webp', 'image/avif', 'image/bmp',
  'video/mp4', 'video/webm', 'video/ogg', 'audio/mpeg', 'audio/ogg', 'audio/mp4',
  'audio/wav', 'audio/webm', 'audio/flac',
]);
const EXT_MIME = {
  png: 'image/png', jpg: 'image/jpeg', jpeg: 'image/jpeg', gif: 'image/gif', webp: 'image/webp',
  avif: 'image/avif', bmp: 'image/bmp', mp4: 'video/mp4', m4v: 'video/mp4', webm: 'video/webm',
  ogv: 'video/ogg', mp3: 'audio/mpeg', ogg: 'audio/ogg', oga: 'audio/ogg', opus: 'audio/ogg',
  m4a: 'audio/mp4', wav: 'audio/wav', flac: 'audio/flac', pdf: 'application/pdf',
  txt: 'text/plain', zip: 'application/zip',
};
const KIND_LABEL = { channel: 'Channel', group: 'Group', dm: 'Direct message' };

// ---------------------------------------------------------------------------------------------
// Small helpers

const $ = (id) => document.getElementById(id);
const enc = encodeURIComponent;

/** Creates an element: h('div', {class: 'x', onclick: fn}, child, 'text', ...). */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v == null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (v === true) el.setAttribute(k, '');
      else el.setAttribute(k, String(v));
    }
  }
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

/** Makes `parent`'s children exactly `nodes`, in order, moving as few as it can. */
function reconcile(parent, nodes) {
  const want = new Set(nodes);
  for (const c of [...parent.children]) if (!want.has(c)) c.remove();
  let ref = parent.firstChild;
  for (const n of nodes) {
    if (n === ref) { ref = ref.nextSibling; continue; }
    parent.insertBefore(n, ref);
  }
}

function shortId(id) {
  if (!id) return '';
  return id.length > 14 ? `${id.slice(0, 4)}…${id.slice(-6)}` : id;
}

function fmtSize(n) {
  if (n == null) return '';
  if (n < 1024) return `${n} B`;
  const u = ['KB', 'MB', 'GB', 'TB'];
  let i = -1;
  do { n /= 1024; i++; } while (n >= 1024 && i < u.length - 1);
  return `${n < 10 ? n.toFixed(1) : Math.round(n)} ${u[i]}`;
}

function fmtLeft(ms) {
  const s = Math.max(0, Math.ceil(ms / 1000));
  const d = Math.floor(s / 86400), hh = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60), sec = s % 60;
  if (d) return hh ? `${d}d ${hh}h` : `${d}d`;
  if (hh) return m ? `${hh}h ${m}m` : `${hh}h`;
  if (m) return `${m}m ${sec}s`;
  return `${sec}s`;
}

function fmtDuration(ms) {
  const opt = TIMERS.find((t) => t.ms === ms);
  return opt ? opt.long : fmtLeft(ms);
}
const TIMERS = [
  { ms: 30000, long: '30 seconds' }, { ms: 300000, long: '5 minutes' },
  { ms: 3600000, long: '1 hour' }, { ms: 86400000, long: '1 day' },
  { ms: 604800000, long: '1 week' },
];

function sameDay(a, b) {
  return a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth()
    && a.getDate() === b.getDate();
}

function fmtTime(ts) {
  return new Date(ts).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

/** Short time for the sidebar: today → 14:03, this week → Tue, else 3 Mar. */
function fmtWhen(ts) {
  if (!ts) return '';
  const d = new Date(ts), now = new Date();
  if (sameDay(d, now)) return fmtTime(ts);
  if (now - d < 6 * 86400000) return d.toLocaleDateString([], { weekday: 'short' });
  if (d.getFullYear() === now.getFullYear()) return d.toLocaleDateString([], { day: 'numeric', month: 'short' });
  return d.toLocaleDateString([], { day: 'numeric', month: 'short', year: 'numeric' });
}

function dayKey(ts) {
  const d = new Date(ts);
  return `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`;
}

function dayLabel(ts) {
  const d = new Date(ts), now = new Date();
  if (sameDay(d, now)) return 'Today';
  const y = new Date(now); y.setDate(now.getDate() - 1);
  if (sameDay(d, y)) return 'Yesterday';
  const opts = { weekday: 'long', day: 'numeric', month: 'long' };
  if (d.getFullYear() !== now.getFullYear()) opts.year = 'numeric';
  return d.toLocaleDateString([], opts);
}

function hue(id) {
  let x = 0;
  for (let i = 0; i < id.length; i++) x = (x * 31 + id.charCodeAt(i)) >>> 0;
  return x % 360;
}

function setAvatar(el, id, label) {
  let t = (label || '?').trim();
  // An unnamed peer shows as "12D3…abcdef": every one would start with "1".
  if (t.includes('…') && id && t === shortId(id)) t = id.slice(-2);
  const first = [...t.replace(/^[^\p{L}\p{N}]+/u, '')][0] || [...t][0] || '?';
  el.textContent = first.toUpperCase();
  el.style.setProperty('--hue', String(hue(id || t)));
}

const PEER_RE = /^[1-9A-HJ-NP-Za-km-z]{46,60}$/;

function guessMime(name) {
  const ext = (name || '').split('.').pop().toLowerCase();
  return EXT_MIME[ext] || '';
}

function mediaKind(f) {
  const mime = f.mime || guessMime(f.name);
  if (!MEDIA_TYPES.has(mime)) return 'file';
  return mime.split('/')[0]; // image | video | audio
}

/** The type a downloaded blob gets: only media types render; anything else is opaque bytes. */
function safeType(f) {
  const mime = f.mime || guessMime(f.name);
  return MEDIA_TYPES.has(mime) ? mime : 'application/octet-stream';
}

function byteLen(s) { return new TextEncoder().encode(s).length; }

let toastTimer = 0;
function toast(msg, { error = false } = {}) {
  const t = $('toast');
  t.textContent = msg;
  t.classList.toggle('error', error);
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.hidden = true; }, error ? 6000 : 2500);
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const ta = h('textarea', { class: 'visually-hidden' });
    ta.value = text;
    document.body.append(ta);
    ta.select();
    document.execCommand('copy');
    ta.remove();
  }
  toast('Copied');
}

// ---------------------------------------------------------------------------------------------
// The API

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
  /** Worth trying again later: the node did not answer, or was busy. */
  get transient() { return this.status === 0 || this.status >= 500 || this.status === 408 || this.status === 429; }
}

async function errorText(res) {
  try {
    const j = await res.json();
    if (j && typeof j.error === 'string') return j.error;
  } catch { /* not JSON */ }
  return `${res.status} ${res.statusText}`.trim();
}

// The session: kept in sessionStorage (this origin only, port included; gone with the tab)
// and sent in a header, never as a cookie, which browsers would also hand to other local ports.
const SESSION_KEY = 'samizdat:session';
let session = null;
try { session = sessionStorage.getItem(SESSION_KEY); } catch { /* storage disabled */ }

function authHeaders(headers = {}) {
  return session ? { ...headers, 'x-samizdat-session': session } : { ...headers };
}

/** Spends the one-time login token `samizdat ui` put in the address's fragment, if any. */
async function takeLogin() {
  const m = /^#login=([0-9a-fA-F]{1,128})$/.exec(location.hash);
  if (!m) return;
  history.replaceState(null, '', '/');
  const res = await fetch('/ui/session', {
    method: 'POST', credentials: 'omit', cache: 'no-store',
    headers: { 'content-type': 'application/json' }, body: JSON.stringify({ login: m[1] }),
  });
  if (!res.ok) throw new ApiError(res.status, await errorText(res));
  const j = await res.json();
  session = j.session;
  try { sessionStorage.setItem(SESSION_KEY, session); } catch { /* kept in memory only */ }
}

async function api(path, { method = 'GET', body, headers = {} } = {}) {
  if (S.expired) throw new ApiError(401, 'session expired');
  const opts = { method, credentials: 'omit', headers: authHeaders(headers) };
  if (body !== undefined) {
    opts.headers['content-type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, opts);
  } catch {
    setNodeDown(true);
    throw new ApiError(0, 'your node does not answer');
  }
  setNodeDown(false);
  if (res.status === 401) {
    sessionExpired();
    throw new ApiError(401, 'session expired');
  }
  if (!res.ok) throw new ApiError(res.status, await errorText(res));
  if (res.status === 204) return null;
  const ct = res.headers.get('content-type') || '';
  return ct.includes('json') ? res.json() : res.text();
}

/** Uploads a file with progress; resolves to {cid, size, name, mime, key?}. */
function uploadFile(file, priv, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    const name = file.name || 'file';
    xhr.open('POST', `/v1/files?name=${enc(name)}${priv ? '&private=true' : ''}`);
    xhr.setRequestHeader('content-type', 'application/octet-stream');
    if (session) xhr.setRequestHeader('x-samizdat-session', session);
    xhr.upload.addEventListener('progress', (e) => {
      if (e.lengthComputable) onProgress(e.loaded / e.total);
    });
    xhr.addEventListener('load', () => {
      if (xhr.status === 401) { sessionExpired(); reject(new ApiError(401, 'session expired')); return; }
      setNodeDown(false);
      let j = null;
      try { j = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status >= 200 && xhr.status < 300 && j) resolve(j);
      else reject(new ApiError(xhr.status, (j && j.error) || `upload failed (${xhr.status})`));
    });
    xhr.addEventListener('error', () => { setNodeDown(true); reject(new ApiError(0, 'your node does not answer')); });
    xhr.send(file);
  });
}

// ---------------------------------------------------------------------------------------------
// State

class Conv {
  constructor(kind, id) {
    this.kind = kind;
    this.id = id;
    this.key = `${kind}:${id}`;
    this.msgs = [];            // sorted by (ts, id)
    this.byId = new Map();
    this.pending = [];         // outgoing, not yet accepted by the node
    this.loaded = false;
    this.loading = null;
    this.error = null;
    this.prev = null;          // channels: cursor of the page before the oldest loaded
    this.shown = PAGE;         // DMs and groups: how many of the newest are rendered
    this.loadingOlder = false;
    this.unread = new Set();
    this.last = null;
    this.draft = '';
    this.attach = null;
    this.stick = true;
    this.days = new Map();
    this.pumping = false;
    this.topEl = null;
    this.newBelow = 0;
  }
  get hash() { return `#/c/${this.kind}/${enc(this.id)}`; }
}

const S = {
  me: null,
  node: null,
  peers: [],
  connected: new Set(),
  channels: new Map(),
  groups: new Map(),
  dms: new Map(),
  contacts: new Map(),
  convs: new Map(),
  sync: new Map(),
  open: null,
  panel: null,
  read: {},
  readKey: '',
  nodeDown: false,
  expired: false,
  invites: new Map(),
  filter: '',
  es: null,
  localSeq: 0,
  card: null,
  eventsDown: false,
  requests: [],
};

function getConv(kind, id) {
  const key = `${kind}:${id}`;
  let c = S.convs.get(key);
  if (!c) { c = new Conv(kind, id); S.convs.set(key, c); }
  return c;
}

function openConv() { return S.open ? S.convs.get(S.open) : null; }
function isViewing(conv) { return S.open === conv.key && document.visibilityState === 'visible'; }

function readTs(conv) { return S.read[conv.key] || 0; }
function saveRead() {
  try { localStorage.setItem(S.readKey, JSON.stringify(S.read)); } catch { /* storage full or off */ }
}

function markRead(conv) {
  let max = readTs(conv);
  for (const m of conv.msgs) if (m.ts > max) max = m.ts;
  if (conv.last && conv.last.ts > max) max = conv.last.ts;
  const changed = max !== readTs(conv) || conv.unread.size;
  S.read[conv.key] = max;
  conv.unread.clear();
  if (changed) { saveRead(); updateSideItem(conv); updateTitle(); }
}

// Normalised messages: {id, conv, author, mine, ts, text, expiresAt, file, delivered}

function channelMine(post) {
  const ch = S.channels.get(post.channel);
  return post.author === S.me.peer_id || (post.author === post.channel && ch?.role === 'owner');
}

function normPost(p) {
  return {
    id: p.id, author: p.author, mine: channelMine(p), ts: p.timestamp, text: p.text,
    expiresAt: p.expires_at ?? null,
    // The type the poster's node recorded decides how it shows; the name's extension is only a
    // guess for posts that carry none.
    file: p.file ? { cid: p.file.cid, name: p.file.name, size: p.file.size, mime: p.file.mime || guessMime(p.file.name) } : null,
  };
}

function normDm(m) {
  return {
    id: m.id, author: m.from, mine: m.outgoing, ts: m.timestamp, text: m.text,
    expiresAt: m.expires_at ?? null, file: m.file || null, delivered: m.delivered,
  };
}

function normGroupMsg(m) {
  return {
    id: m.id, author: m.author, mine: m.outgoing, ts: m.timestamp, text: m.text,
    expiresAt: m.expires_at ?? null, file: m.file || null,
  };
}

function cmpMsg(a, b) { return a.ts - b.ts || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0); }

/** Adds or updates a message; returns true when it is new. */
function addMsg(conv, m) {
  const old = conv.byId.get(m.id);
  if (old) {
    // Delivery only moves forward: a late answer to the send must not undo a later event.
    if (old.delivered) m.delivered = true;
    const changed = old.delivered !== m.delivered || old.text !== m.text;
    Object.assign(old, m);
    if (changed && old._el) updateMsgEl(conv, old);
    return false;
  }
  conv.byId.set(m.id, m);
  let i = conv.msgs.length;
  while (i > 0 && cmpMsg(conv.msgs[i - 1], m) > 0) i--;
  conv.msgs.splice(i, 0, m);
  // Keep what is rendered above it rendered (DMs and groups show the newest `shown`).
  if (conv.loaded && conv.kind !== 'channel' && i >= conv.msgs.length - conv.shown) conv.shown++;
  if (!conv.last || cmpMsg(m, conv.last) >= 0) conv.last = m;
  return true;
}

function removeMsg(conv, id) {
  const m = conv.byId.get(id);
  if (!m) return;
  conv.byId.delete(id);
  conv.msgs.splice(conv.msgs.indexOf(m), 1);
  conv.unread.delete(id);
  if (conv.last === m || conv.last?.id === id) conv.last = conv.msgs[conv.msgs.length - 1] || null;
  if (m._revoke) m._revoke();
  updateSideItem(conv);
  updateTitle();
  if (S.open === conv.key) renderMessages(conv);
}

function visibleMsgs(conv) {
  if (conv.kind === 'channel') return conv.msgs;
  return conv.msgs.slice(Math.max(0, conv.msgs.length - conv.shown));
}

function hasOlder(conv) {
  return conv.kind === 'channel' ? !!conv.prev : conv.msgs.length > conv.shown;
}

// ---------------------------------------------------------------------------------------------
// Loading

async function loadConv(conv) {
  if (conv.loaded) return;
  if (conv.loading) return conv.loading;
  conv.loading = (async () => {
    try {
      if (conv.kind === 'channel') {
        const page = await api(`/v1/channels/${enc(conv.id)}/posts?last=${PAGE}`);
        for (const p of page.posts) addMsg(conv, normPost(p));
        conv.prev = page.prev ?? null;
      } else if (conv.kind === 'dm') {
        const list = await api(`/v1/dm/${enc(conv.id)}`);
        for (const m of list) addMsg(conv, normDm(m));
      } else {
        const list = await api(`/v1/groups/${enc(conv.id)}/messages`);
        for (const m of list) addMsg(conv, normGroupMsg(m));
      }
      conv.loaded = true;
      conv.error = null;
    } catch (e) {
      conv.error = e;
      throw e;
    } finally {
      conv.loading = null;
    }
  })();
  return conv.loading;
}

/** Re-reads a loaded conversation (after missed events): adds what is new, drops what is gone. */
async function reloadConv(conv) {
  if (!conv.loaded) return;
  try {
    if (conv.kind === 'channel') {
      const page = await api(`/v1/channels/${enc(conv.id)}/posts?last=${PAGE}`);
      for (const p of page.posts) noteIncoming(conv, normPost(p), false);
    } else {
      const list = conv.kind === 'dm'
        ? (await api(`/v1/dm/${enc(conv.id)}`)).map(normDm)
        : (await api(`/v1/groups/${enc(conv.id)}/messages`)).map(normGroupMsg);
      const ids = new Set(list.map((m) => m.id));
      for (const m of [...conv.msgs]) if (!ids.has(m.id)) removeMsg(conv, m.id);
      for (const m of list) noteIncoming(conv, m, false);
    }
  } catch { /* shown elsewhere */ }
  if (S.open === conv.key) renderMessages(conv);
}

async function loadOlder(conv) {
  if (conv.loadingOlder || !hasOlder(conv)) return;
  if (conv.kind === 'channel') {
    conv.loadingOlder = true;
    updateTopEl(conv);
    try {
      const page = await api(`/v1/channels/${enc(conv.id)}/posts?last=${PAGE}&before=${enc(conv.prev)}`);
      for (const p of page.posts) addMsg(conv, normPost(p));
      conv.prev = page.prev ?? null;
    } catch (e) {
      toast(`Could not load older posts: ${e.message}`, { error: true });
    } finally {
      conv.loadingOlder = false;
    }
  } else {
    conv.shown += PAGE;
  }
  if (S.open === conv.key) renderMessages(conv);
}

async function pool(jobs, n) {
  const queue = [...jobs];
  const workers = Array.from({ length: n }, async () => {
    while (queue.length) {
      const job = queue.shift();
      try { await job(); } catch { /* per job */ }
    }
  });
  await Promise.all(workers);
}

async function loadLists() {
  const [node, channels, groups, dms, contacts] = await Promise.all([
    api('/v1/node'), api('/v1/channels'), api('/v1/groups'), api('/v1/dm'), api('/v1/contacts'),
  ]);
  S.node = node;
  S.channels = new Map(channels.map((c) => [c.id, c]));
  S.groups = new Map(groups.map((g) => [g.id, g]));
  S.contacts = new Map(contacts.map((c) => [c.peer_id, c]));
  const dmMap = new Map(dms.map((d) => [d.peer, d]));
  // Keep conversations opened here that have no message yet.
  for (const [peer, d] of S.dms) if (!dmMap.has(peer) && d.local) dmMap.set(peer, d);
  S.dms = dmMap;
  for (const d of dms) {
    const conv = getConv('dm', d.peer);
    if (d.last) {
      const m = normDm(d.last);
      if (!conv.last || cmpMsg(m, conv.last) > 0) conv.last = m;
    }
  }
  renderContacts();
}

/** Reads what is needed to count unread messages everywhere. */
async function primeUnread(firstRun) {
  const jobs = [];
  const prime = (conv) => async () => {
    await loadConv(conv);
    recomputeUnread(conv, firstRun);
  };
  for (const id of S.channels.keys()) jobs.push(prime(getConv('channel', id)));
  for (const id of S.groups.keys()) jobs.push(prime(getConv('group', id)));
  for (const d of S.dms.values()) {
    const conv = getConv('dm', d.peer);
    if (firstRun) { if (conv.last) S.read[conv.key] = conv.last.ts; continue; }
    if (d.last && !d.last.outgoing && d.last.timestamp > readTs(conv)) jobs.push(prime(conv));
  }
  await pool(jobs, 3);
  if (firstRun) saveRead();
  renderSidebar();
}

function recomputeUnread(conv, baseline) {
  if (baseline) {
    markRead(conv);
    return;
  }
  const r = readTs(conv);
  conv.unread = new Set(conv.msgs.filter((m) => !m.mine && m.ts > r).map((m) => m.id));
  if (isViewing(conv)) markRead(conv);
  updateSideItem(conv);
  updateTitle();
}

async function reloadAll() {
  try {
    await loadLists();
  } catch { return; }
  renderSidebar();
  for (const conv of S.convs.values()) {
    if (conv.loaded) reloadConv(conv).then(() => recomputeUnread(conv, false));
  }
  const conv = openConv();
  if (conv) renderConvHead(conv);
  refreshNetSummary();
}

// ---------------------------------------------------------------------------------------------
// Incoming messages

/** A message from history or an event: stores it, counts it unread, updates what shows it. */
function noteIncoming(conv, m, live = true) {
  // An outgoing message the node already announced replaces its optimistic copy.
  if (m.mine) {
    const p = conv.pending.find((x) => x.state !== 'failed' && x.text === m.text
      && (x.upload?.result?.cid || null) === (m.file?.cid || null) && x.sentOnce);
    if (p) dropPending(conv, p, m);
  }
  if (m.expiresAt && m.expiresAt <= Date.now()) return;
  const isNew = addMsg(conv, m);
  if (!isNew) return;
  if (!m.mine && m.ts > readTs(conv)) {
    if (isViewing(conv)) markRead(conv);
    else conv.unread.add(m.id);
  }
  if (live || S.open === conv.key) {
    updateSideItem(conv);
    updateTitle();
    renderSidebarOrder(conv.kind);
  }
  if (S.open === conv.key && live) {
    if (!conv.stick && !m.mine) {
      conv.newBelow++;
      updateJump();
    }
    renderMessages(conv, { toBottom: m.mine });
  }
}

function onPost(post) {
  if (!S.channels.has(post.channel)) scheduleListReload();
  const conv = getConv('channel', post.channel);
  const m = normPost(post);
  // An old post arriving by sync, older than anything loaded: it is read when scrolled to.
  if (S.open === conv.key) refreshOpenChannelSoon();
  if (conv.loaded && conv.prev && conv.msgs.length && cmpMsg(m, conv.msgs[0]) < 0) return;
  noteIncoming(conv, m);
}

function onDirectMessage(msg) {
  if (!S.dms.has(msg.peer)) {
    const c = S.contacts.get(msg.peer);
    S.dms.set(msg.peer, { peer: msg.peer, name: c?.name || null, last: msg, count: 0 });
    renderSidebar();
  }
  const d = S.dms.get(msg.peer);
  const conv = getConv('dm', msg.peer);
  if (!conv.byId.has(msg.id)) d.count = (d.count || 0) + 1;
  if (!d.last || msg.timestamp >= d.last.timestamp) d.last = msg;
  d.local = false;
  noteIncoming(conv, normDm(msg));
}

function onGroupMessage(msg) {
  if (!S.groups.has(msg.group)) scheduleListReload();
  noteIncoming(getConv('group', msg.group), normGroupMsg(msg));
}

function onGroupChanged(g) {
  const had = S.groups.has(g.id);
  S.groups.set(g.id, g);
  const inv = S.invites.get(g.id);
  if (inv) for (const p of g.members) inv.delete(p);
  const conv = getConv('group', g.id);
  if (!had) { conv.loaded = false; loadConv(conv).then(() => recomputeUnread(conv, false), () => {}); }
  renderSidebar();
  if (S.open === conv.key) { renderConvHead(conv); renderComposer(conv); }
  if ($('dlg-members').open && $('dlg-members').dataset.group === g.id) renderMembers(g.id);
}

function onChannelUpdated(ch) {
  S.channels.set(ch.id, ch);
  const conv = getConv('channel', ch.id);
  updateSideItem(conv);
  renderSidebarOrder('channel');
  if (S.open === conv.key) { renderConvHead(conv); renderComposer(conv); }
}

let listReloadTimer = 0;
function scheduleListReload() {
  clearTimeout(listReloadTimer);
  listReloadTimer = setTimeout(async () => {
    try { await loadLists(); } catch { return; }
    renderSidebar();
    const conv = openConv();
    if (conv) { renderConvHead(conv); renderComposer(conv); }
  }, 300);
}

// ---------------------------------------------------------------------------------------------
// Server-Sent Events

function connectEvents() {
  if (S.expired) return;
  if (S.es) S.es.close();
  // EventSource cannot send a header, so the stream is read with fetch.
  const ctl = new AbortController();
  const es = { close: () => ctl.abort() };
  S.es = es;
  const handlers = new Map();
  const on = (name, fn) => handlers.set(name, fn);
  on('post', (d) => onPost(d.post));
  on('post_expired', (d) => removeMsg(getConv('channel', d.channel), d.id));
  on('direct_message', (d) => onDirectMessage(d.message));
  on('group_message', (d) => onGroupMessage(d.message));
  on('group_changed', (d) => onGroupChanged(d.group));
  on('channel_updated', (d) => onChannelUpdated(d.channel));
  on('sync_progress', (d) => onSync(d.status));
  on('file_progress', (d) => onFileProgress(d.status));
  on('peer_connected', (d) => { S.connected.add(d.peer_id); onPeersChanged(); });
  on('peer_disconnected', (d) => { S.connected.delete(d.peer_id); onPeersChanged(); });
  on('requests_changed', () => loadRequests());
  on('lagged', () => reloadAll());
  const again = (ms) => { if (!S.expired && S.es === es) setTimeout(connectEvents, ms); };
  (async () => {
    let res;
    try {
      res = await fetch('/v1/events', {
        credentials: 'omit', cache: 'no-store', signal: ctl.signal,
        headers: authHeaders({ accept: 'text/event-stream' }),
      });
    } catch {
      if (!ctl.signal.aborted) { S.eventsDown = true; again(3000); }
      return;
    }
    if (res.status === 401) { sessionExpired(); return; }
    if (!res.ok || !res.body) { S.eventsDown = true; again(3000); return; }
    if (S.eventsDown) reloadAll();
    S.eventsDown = false;
    try {
      await readEvents(res.body, (name, raw) => {
        const fn = handlers.get(name);
        if (!fn) return;
        let data;
        try { data = JSON.parse(raw); } catch { data = raw; }
        try { fn(data); } catch (err) { console.error(`event ${name}`, err); }
      });
    } catch { /* the stream broke: reconnect below */ }
    if (ctl.signal.aborted) return;
    S.eventsDown = true;
    again(1000);
  })();
}

/** Reads a text/event-stream body, calling `emit(event, data)` for each event. */
async function readEvents(body, emit) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  let name = 'message';
  let data = [];
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    buf += value;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl).replace(/\r$/, '');
      buf = buf.slice(nl + 1);
      if (line === '') {
        if (data.length) emit(name, data.join('\n'));
        name = 'message';
        data = [];
      } else if (line.startsWith('event:')) {
        name = line.slice(6).trim();
      } else if (line.startsWith('data:')) {
        data.push(line.slice(5).replace(/^ /, ''));
      }
      // Comments (keep-alives) and other fields are ignored.
    }
    if (buf.length > (4 << 20)) throw new Error('event too large');
  }
}

let peersTimer = 0;
function onPeersChanged() {
  clearTimeout(peersTimer);
  peersTimer = setTimeout(() => {
    refreshNetSummary();
    if (S.panel === 'network') renderNetwork();
  }, 600);
  const conv = openConv();
  if (conv && conv.kind === 'dm') renderConvHead(conv);
  if (conv && conv.kind === 'channel') refreshOpenChannelSoon();
}

function onSync(st) {
  S.sync.set(st.channel, st);
  const conv = openConv();
  if (conv && conv.kind === 'channel' && conv.id === st.channel) { renderConvInfo(conv); updateTopEl(conv); }
  if (S.panel === 'network') updateNetSync(st);
}

// ---------------------------------------------------------------------------------------------
// Session and node liveness

function sessionExpired(message) {
  if (S.expired) return;
  S.expired = true;
  if (S.es) S.es.close();
  session = null;
  try { sessionStorage.removeItem(SESSION_KEY); } catch { /* storage disabled */ }
  if (message) {
    $('expired-title').textContent = 'Not logged in';
    $('expired-text').textContent = message;
  }
  for (const d of document.querySelectorAll('dialog[open]')) d.close();
  $('app').hidden = true;
  $('boot').hidden = true;
  $('expired').hidden = false;
  document.title = 'Samizdat — session expired';
}

let probeTimer = 0;
function setNodeDown(down) {
  if (down === S.nodeDown) return;
  S.nodeDown = down;
  $('offline').hidden = !down;
  clearInterval(probeTimer);
  if (down) {
    probeTimer = setInterval(() => { api('/v1/node').catch(() => {}); }, 3000);
  } else {
    retryFailed(true);
  }
}

// ---------------------------------------------------------------------------------------------
// Sidebar

function convTitle(conv) {
  if (conv.kind === 'channel') {
    const ch = S.channels.get(conv.id);
    return ch?.name || `Channel ${shortId(conv.id)}`;
  }
  if (conv.kind === 'group') return S.groups.get(conv.id)?.name || `Group ${shortId(conv.id)}`;
  return peerName(conv.id);
}

function peerName(peer) {
  if (peer === S.me?.peer_id) return 'you';
  const c = S.contacts.get(peer);
  if (c?.name) return c.name;
  const d = S.dms.get(peer);
  if (d?.name) return d.name;
  return shortId(peer);
}

function authorName(conv, m) {
  if (m.mine) return 'you';
  if (conv.kind === 'channel' && m.author === conv.id) return convTitle(conv);
  return peerName(m.author);
}

function lastLine(conv) {
  const m = conv.pending.length ? conv.pending[conv.pending.length - 1] : conv.last;
  if (!m) {
    if (conv.kind === 'channel') return S.channels.get(conv.id)?.description || 'No posts yet';
    if (conv.kind === 'group') return S.groups.get(conv.id)?.active === false ? 'You left or were removed' : 'No messages yet';
    return 'No messages yet';
  }
  let s = m.text ? m.text.replace(/\s+/g, ' ') : '';
  if (m.file) {
    const what = { image: 'Photo', video: 'Video', audio: 'Audio' }[mediaKind(m.file)] || 'File';
    s = s ? `${what} · ${s}` : `${what} · ${m.file.name}`;
  }
  if (conv.kind !== 'dm' || m.mine) {
    const who = m.mine ? 'You' : (conv.kind === 'channel' && m.author === conv.id ? '' : peerName(m.author));
    if (who) s = `${who}: ${s}`;
  }
  return s;
}

function activity(conv) {
  const p = conv.pending[conv.pending.length - 1];
  if (p) return p.ts;
  if (conv.last) return conv.last.ts;
  if (conv.kind === 'group') return S.groups.get(conv.id)?.joined_at || 0;
  return 0;
}

function unreadCount(conv) { return conv.unread.size; }

function sideItem(conv) {
  if (conv.side) return conv.side;
  const av = h('span', { class: 'avatar', 'aria-hidden': 'true' });
  const name = h('span', { class: 'conv-name' });
  const time = h('span', { class: 'conv-time' });
  const last = h('span', { class: 'conv-last' });
  const badge = h('span', { class: 'unread', 'data-testid': 'unread', hidden: true });
  const btn = h('button', {
    type: 'button', class: 'conv', 'data-testid': 'conv', 'data-kind': conv.kind, 'data-id': conv.id,
    onclick: () => go(conv.hash),
  }, av, h('span', { class: 'conv-body' },
    h('span', { class: 'conv-top' }, name, time),
    h('span', { class: 'conv-bottom' }, last, badge)));
  const li = h('li', null, btn);
  conv.side = { li, btn, av, name, time, last, badge };
  updateSideItem(conv);
  return conv.side;
}

function updateSideItem(conv) {
  const s = conv.side;
  if (!s) return;
  const title = convTitle(conv);
  s.name.textContent = title;
  setAvatar(s.av, conv.id, title);
  s.av.classList.toggle('round', conv.kind === 'dm');
  s.time.textContent = fmtWhen(activity(conv));
  s.last.textContent = lastLine(conv);
  const n = unreadCount(conv);
  const more = conv.kind === 'channel' && n >= conv.msgs.length && conv.prev;
  s.badge.textContent = n ? (n > 99 || more ? `${Math.min(n, 99)}+` : String(n)) : '';
  s.badge.hidden = n === 0;
  s.btn.classList.toggle('has-unread', n > 0);
  s.btn.classList.toggle('active', S.open === conv.key);
  if (S.open === conv.key) s.btn.setAttribute('aria-current', 'page');
  else s.btn.removeAttribute('aria-current');
  s.btn.setAttribute('aria-label', `${KIND_LABEL[conv.kind]} ${title}${n ? `, ${n} unread` : ''}`);
}

function kindConvs(kind) {
  if (kind === 'channel') return [...S.channels.keys()].map((id) => getConv('channel', id));
  if (kind === 'group') return [...S.groups.keys()].map((id) => getConv('group', id));
  return [...S.dms.keys()].map((id) => getConv('dm', id));
}

function renderSidebarOrder(kind) {
  const f = S.filter.toLowerCase();
  const convs = kindConvs(kind)
    .filter((c) => !f || convTitle(c).toLowerCase().includes(f) || c.id.toLowerCase().includes(f))
    .sort((a, b) => activity(b) - activity(a) || convTitle(a).localeCompare(convTitle(b)));
  reconcile($(`list-${kind}`), convs.map((c) => sideItem(c).li));
  $(`empty-${kind}`).hidden = convs.length > 0 || !!f;
  $(`sec-${kind}`).classList.toggle('filtered-out', !!f && convs.length === 0);
}

function renderSidebar() {
  for (const kind of ['channel', 'group', 'dm']) {
    for (const c of kindConvs(kind)) updateSideItem(c);
    renderSidebarOrder(kind);
  }
  updateTitle();
}

function updateTitle() {
  let n = 0;
  for (const kind of ['channel', 'group', 'dm']) for (const c of kindConvs(kind)) n += unreadCount(c);
  document.title = n ? `(${n}) Samizdat` : 'Samizdat';
}

// ---------------------------------------------------------------------------------------------
// Routing

function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function route() {
  if (S.expired || !S.me) return;
  const parts = location.hash.replace(/^#\/?/, '').split('/');
  const [a, kind] = parts;
  const id = decodeURIComponent(parts.slice(2).join('/'));
  if (a === 'c' && ['channel', 'group', 'dm'].includes(kind) && id) showConv(kind, id);
  else if (a === 'contacts' || a === 'network' || a === 'requests') showPanel(a);
  else showNothing();
}

function hideMain() {
  $('placeholder').hidden = true;
  $('conv-view').hidden = true;
  $('panel-contacts').hidden = true;
  $('panel-network').hidden = true;
  $('panel-requests').hidden = true;
}

function setOpen(key) {
  const prev = S.open ? S.convs.get(S.open) : null;
  if (S.open !== key) {
    if (prev && $('composer-form').dataset.conv === prev.key) prev.draft = $('composer').value;
    $('composer-form').dataset.conv = '';
  }
  if (prev && prev.key !== key) {
    S.open = null;
    updateSideItem(prev);
  }
  S.open = key;
}

function showNothing() {
  setOpen(null);
  S.panel = null;
  hideMain();
  $('placeholder').hidden = false;
  document.body.classList.remove('main-open');
  updateFootActive();
}

function showPanel(name) {
  setOpen(null);
  S.panel = name;
  hideMain();
  $(`panel-${name}`).hidden = false;
  document.body.classList.add('main-open');
  updateFootActive();
  if (name === 'contacts') { loadCard(); renderContacts(); api('/v1/contacts').then((l) => { S.contacts = new Map(l.map((c) => [c.peer_id, c])); renderContacts(); }, () => {}); }
  if (name === 'network') renderNetwork();
  if (name === 'requests') loadRequests();
}

// ---------------------------------------------------------------------------------------------
// Message requests

/** Loads the pending requests and shows their count; the panel too when it is open. */
async function loadRequests() {
  try { S.requests = await api('/v1/requests'); } catch { return; }
  renderRequests();
}

function renderRequests() {
  const n = S.requests.length;
  $('btn-requests').hidden = n === 0;
  $('requests-count').textContent = String(n);
  $('btn-requests').setAttribute('aria-label', `${n} message request${n === 1 ? '' : 's'}`);
  if (S.panel !== 'requests') return;
  $('request-empty').hidden = n > 0;
  $('request-list').replaceChildren(...S.requests.map((r) => {
    const what = r.kind === 'group' ? `invites you to the group “${r.preview}”` : 'wants to message you';
    const err = h('p', { class: 'form-error', role: 'alert', hidden: true });
    const act = (action) => async () => {
      err.hidden = true;
      try {
        await api(`/v1/requests/${enc(r.peer_id)}/${action}`, { method: 'POST' });
      } catch (e) {
        err.textContent = e.message;
        err.hidden = false;
        return;
      }
      await loadRequests();
      if (action === 'accept') {
        await loadLists().catch(() => {});
        renderSidebar();
        if (r.kind === 'dm') go(getConv('dm', r.peer_id).hash);
        else if (r.group_id) go(getConv('group', r.group_id).hash);
      }
    };
    return h('li', { class: 'request', 'data-testid': 'request', 'data-peer': r.peer_id },
      h('div', { class: 'request-text' },
        h('code', { class: 'wrap-any' }, r.peer_id),
        h('span', { class: 'muted small' }, ` ${what} · ${fmtWhen(r.received_at)}`),
        r.kind === 'dm' && r.preview ? h('p', { class: 'request-preview' }, r.preview) : null),
      h('div', { class: 'row' },
        h('button', { type: 'button', class: 'btn primary small', 'data-testid': 'request-accept', onclick: act('accept') }, 'Accept'),
        h('button', { type: 'button', class: 'btn small', 'data-testid': 'request-decline', onclick: act('decline') }, 'Decline'),
        h('button', { type: 'button', class: 'btn small danger', 'data-testid': 'request-block', onclick: act('block') }, 'Block')),
      err);
  }));
}

function updateFootActive() {
  $('btn-contacts').classList.toggle('active', S.panel === 'contacts');
  $('btn-network').classList.toggle('active', S.panel === 'network');
}

function showConv(kind, id) {
  if (kind === 'dm' && !S.dms.has(id)) {
    S.dms.set(id, { peer: id, name: S.contacts.get(id)?.name || null, last: null, count: 0, local: true });
    renderSidebarOrder('dm');
  }
  const conv = getConv(kind, id);
  const same = S.open === conv.key;
  setOpen(conv.key);
  S.panel = null;
  updateFootActive();
  hideMain();
  $('conv-view').hidden = false;
  document.body.classList.add('main-open');
  updateSideItem(conv);
  if (!same) {
    conv.stick = true;
    conv.newBelow = 0;
    E.list.replaceChildren();
    renderConvHead(conv);
    renderComposer(conv);
    updateJump();
  }
  renderMessages(conv, { toBottom: !same });
  markRead(conv);
  if (!conv.loaded) {
    loadConv(conv).then(() => {
      recomputeUnread(conv, false);
      if (S.open === conv.key) { renderMessages(conv, { toBottom: true }); markRead(conv); }
    }, () => { if (S.open === conv.key) renderMessages(conv); });
  }
  if (kind === 'channel' && !same) refreshChannel(conv, true);
  if (!same && matchMedia('(min-width: 761px)').matches && !$('composer-form').hidden) $('composer').focus({ preventScroll: true });
}

/** Re-reads an open channel's numbers (peers online, posts held, sync). */
async function refreshChannel(conv, composerToo) {
  try {
    const [ch, st] = await Promise.all([
      api(`/v1/channels/${enc(conv.id)}`), api(`/v1/channels/${enc(conv.id)}/sync`),
    ]);
    const old = S.channels.get(ch.id);
    S.channels.set(ch.id, ch);
    S.sync.set(st.channel, st);
    updateSideItem(conv);
    if (S.open !== conv.key) return;
    renderConvHead(conv);
    updateTopEl(conv);
    if (composerToo || old?.role !== ch.role) renderComposer(conv);
  } catch { /* shown by the banner */ }
}

let channelRefreshTimer = 0;
function refreshOpenChannelSoon() {
  clearTimeout(channelRefreshTimer);
  channelRefreshTimer = setTimeout(() => {
    const conv = openConv();
    if (conv && conv.kind === 'channel') refreshChannel(conv, false);
  }, 1000);
}

// ---------------------------------------------------------------------------------------------
// Conversation header and info

const E = {};

function renderConvHead(conv) {
  const title = convTitle(conv);
  $('conv-title').textContent = title;
  setAvatar($('conv-avatar'), conv.id, title);
  $('conv-avatar').classList.toggle('round', conv.kind === 'dm');
  const sub = $('conv-sub');
  const actions = $('conv-actions');
  actions.replaceChildren();
  if (conv.kind === 'channel') {
    const ch = S.channels.get(conv.id);
    const role = ch ? { owner: 'your channel', admin: 'you are an admin', follower: 'following' }[ch.role] || ch.role : '';
    const peers = ch ? `${ch.peers} ${ch.peers === 1 ? 'peer' : 'peers'} online` : '';
    sub.textContent = [role, peers].filter(Boolean).join(' · ');
  } else if (conv.kind === 'group') {
    const g = S.groups.get(conv.id);
    if (g) {
      const invited = g.active ? pendingInvites(g).size : 0;
      sub.textContent = g.active
        ? `${g.members.length} ${g.members.length === 1 ? 'member' : 'members'}${invited ? ` · ${invited} invited` : ''}${g.role === 'owner' ? ' · you own it' : ''}`
        : 'you are no longer a member';
      actions.append(h('button', {
        type: 'button', class: 'btn', onclick: () => openMembers(g.id),
        'aria-label': `Members of ${g.name}`,
      }, h('span', { class: 'ic ic-group', 'aria-hidden': 'true' }), ' Members'));
    } else sub.textContent = 'unknown group';
  } else {
    const online = S.connected.has(conv.id);
    sub.textContent = `${online ? 'connected' : 'not connected — messages wait for them'} · ${shortId(conv.id)}`;
    actions.append(h('button', {
      type: 'button', class: 'btn', title: conv.id, onclick: () => copyText(conv.id),
    }, 'Copy peer id'));
  }
  renderConvInfo(conv);
}

function renderConvInfo(conv) {
  const box = $('conv-info');
  if (conv.kind !== 'channel') { box.hidden = true; box.replaceChildren(); return; }
  const ch = S.channels.get(conv.id);
  const st = S.sync.get(conv.id);
  const link = ch?.link || '';
  const rows = [];
  if (ch?.description) rows.push(h('p', { class: 'info-desc' }, ch.description));
  rows.push(h('div', { class: 'info-row' },
    h('span', { class: 'field-label' }, 'Invite link'),
    h('code', { class: 'invite', 'data-testid': 'invite-link', title: link }, link),
    link ? h('button', { type: 'button', class: 'btn small', onclick: () => copyText(link) }, 'Copy') : h('span', { class: 'muted' }, 'not known yet'),
  ));
  const bits = [];
  if (st) {
    if (st.syncing) bits.push(`fetching history: ${st.have} of ${st.known}`);
    else if (st.complete) bits.push('history complete');
    else bits.push(`history: ${st.have} of ${st.known} · waiting for followers who have it`);
  }
  const line = h('div', { class: 'info-row small' }, h('span', { class: 'muted' }, bits.join(' · ')));
  if (st && st.known > 0 && !st.complete) line.append(h('progress', { max: String(st.known), value: String(st.have), 'aria-label': 'History sync' }));
  if (ch && ch.role !== 'owner') {
    line.append(h('button', { type: 'button', class: 'link-btn danger', onclick: () => unfollow(conv) }, 'Unfollow'));
  }
  rows.push(line);
  box.replaceChildren(...rows);
  box.hidden = false;
}

async function unfollow(conv) {
  if (!confirm(`Unfollow ${convTitle(conv)}? Its posts are removed from this node.`)) return;
  try {
    await api(`/v1/channels/${enc(conv.id)}`, { method: 'DELETE' });
    S.channels.delete(conv.id);
    S.convs.delete(conv.key);
    renderSidebar();
    go('#/');
  } catch (e) {
    toast(`Could not unfollow: ${e.message}`, { error: true });
  }
}

// ---------------------------------------------------------------------------------------------
// Messages

function topEl(conv) {
  if (!conv.topEl) conv.topEl = h('div', { class: 'list-top' });
  updateTopEl(conv);
  return conv.topEl;
}

function updateTopEl(conv) {
  const el = conv.topEl;
  if (!el) return;
  if (!conv.loaded && conv.error) {
    el.replaceChildren(h('p', { class: 'form-error' }, `Could not load: ${conv.error.message}`),
      h('button', { type: 'button', class: 'btn small', onclick: () => { conv.error = null; showConv(conv.kind, conv.id); } }, 'Try again'));
  } else if (!conv.loaded || conv.loadingOlder) {
    el.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  } else if (hasOlder(conv)) {
    el.replaceChildren(h('button', { type: 'button', class: 'btn small', onclick: () => loadOlder(conv) }, 'Show older messages'));
  } else {
    let text = 'This is the beginning of the conversation.';
    if (conv.kind === 'channel') {
      const st = S.sync.get(conv.id);
      text = st && !st.complete ? 'Older posts are still being fetched from other followers…' : 'This is the beginning of the channel.';
    } else if (conv.kind === 'dm') text = 'Messages here are end-to-end encrypted: only your node and theirs can read them.';
    else text = 'Messages here are end-to-end encrypted for the group\'s members. New members read only what is posted after they join.';
    el.replaceChildren(h('p', { class: 'muted' }, text));
  }
}

function dayEl(conv, ts) {
  const k = dayKey(ts);
  let el = conv.days.get(k);
  if (!el) {
    el = h('div', { class: 'day', role: 'separator' }, h('span', null, dayLabel(ts)));
    conv.days.set(k, el);
  }
  return el;
}

function renderMessages(conv, { toBottom = false } = {}) {
  if (S.open !== conv.key) return;
  const sc = E.scroller;
  const stick = toBottom || conv.stick;
  // Remember the first message in view, to keep it in place when things are added above.
  let anchor = null;
  if (!stick) {
    for (const el of E.list.children) {
      if (!el.classList.contains('msg')) continue;
      if (el.offsetTop + el.offsetHeight > sc.scrollTop) { anchor = { el, off: el.offsetTop - sc.scrollTop }; break; }
    }
  }
  const nodes = [topEl(conv)];
  let prevDay = null, prevAuthor = null, prevTs = 0;
  const all = visibleMsgs(conv).concat(conv.pending);
  for (const m of all) {
    const dk = dayKey(m.ts);
    if (dk !== prevDay) { nodes.push(dayEl(conv, m.ts)); prevDay = dk; prevAuthor = null; }
    const el = msgEl(conv, m);
    el.classList.toggle('cont', m.author === prevAuthor && m.ts - prevTs < 300000);
    nodes.push(el);
    prevAuthor = m.author;
    prevTs = m.ts;
  }
  if (conv.loaded && all.length === 0) {
    nodes.push(h('div', { class: 'list-empty-conv' }, conv.kind === 'channel' && S.channels.get(conv.id)?.role === 'follower'
      ? 'No posts yet.' : 'No messages yet. Say hello!'));
  }
  reconcile(E.list, nodes);
  if (stick) scrollToBottom();
  else if (anchor && anchor.el.isConnected) sc.scrollTop = anchor.el.offsetTop - anchor.off;
  // Not enough to fill the view: fetch more so it can scroll.
  if (conv.loaded && hasOlder(conv) && sc.scrollHeight <= sc.clientHeight + 50) {
    setTimeout(() => loadOlder(conv), 0);
  }
}

function scrollToBottom() {
  E.scroller.scrollTop = E.scroller.scrollHeight;
  const conv = openConv();
  if (conv) { conv.stick = true; conv.newBelow = 0; updateJump(); }
}

function updateJump() {
  const conv = openConv();
  const show = conv && !conv.stick;
  $('jump-bottom').hidden = !show;
  $('jump-count').textContent = conv && conv.newBelow ? String(conv.newBelow) : '';
}

function onScroll() {
  const conv = openConv();
  if (!conv) return;
  const sc = E.scroller;
  conv.stick = sc.scrollHeight - sc.scrollTop - sc.clientHeight < 40;
  if (conv.stick) conv.newBelow = 0;
  updateJump();
  if (sc.scrollTop < 300 && conv.loaded && hasOlder(conv)) loadOlder(conv);
}

const LINK_RE = /(https?:\/\/[^\s<>"'`]+|samizdat:\/\/(?:channel|contact)\/[A-Za-z0-9]+)/gi;

function linkify(text) {
  const frag = document.createDocumentFragment();
  let last = 0;
  for (const mt of text.matchAll(LINK_RE)) {
    const url = mt[0].replace(/[.,;:!?)\]}'"]+$/, '');
    frag.append(text.slice(last, mt.index));
    if (/^samizdat:/i.test(url)) {
      frag.append(h('a', {
        href: '#', class: 'slink',
        onclick: (e) => { e.preventDefault(); openSamizdatLink(url); },
      }, url));
    } else {
      frag.append(h('a', { href: url, target: '_blank', rel: 'noopener noreferrer' }, url));
    }
    last = mt.index + url.length;
  }
  frag.append(text.slice(last));
  return frag;
}

function openSamizdatLink(url) {
  if (/^samizdat:\/\/channel\//i.test(url)) {
    openDialog('dlg-channel');
    $('follow-link').value = url;
    $('follow-link').focus();
  } else {
    go('#/contacts');
    $('add-contact-link').value = url;
    $('add-contact-link').focus();
  }
}

function msgEl(conv, m) {
  if (!m._el) buildMsgEl(conv, m);
  updateMsgEl(conv, m);
  return m._el;
}

function buildMsgEl(conv, m) {
  const p = {};
  p.author = h('span', { class: 'author' });
  p.text = h('div', { class: 'text', 'data-testid': 'message-text' });
  p.timer = h('span', { class: 'timer', 'data-testid': 'timer', hidden: true });
  p.time = h('time', { class: 'time' });
  p.status = h('span', { class: 'status' });
  p.fail = h('div', { class: 'fail', 'data-testid': 'send-failed', hidden: true });
  p.att = m.file ? attachmentEl(conv, m) : null;
  p.upload = h('div', { class: 'upload', hidden: true });
  const bubble = h('div', { class: 'bubble' }, p.author, p.att, p.upload, p.text,
    h('div', { class: 'meta' }, p.timer, p.time, p.status));
  const root = h('div', { class: `msg kind-${conv.kind}`, 'data-testid': 'message', 'data-id': m.id }, bubble, p.fail);
  p.text.append(linkify(m.text || ''));
  p.text.hidden = !m.text;
  m._el = root;
  m._p = p;
}

function updateMsgEl(conv, m) {
  const p = m._p;
  const root = m._el;
  root.classList.toggle('mine', !!m.mine);
  root.classList.toggle('pending', !!m.local && m.state !== 'failed');
  root.classList.toggle('failed', !!m.local && m.state === 'failed');
  const showAuthor = conv.kind !== 'dm';
  p.author.hidden = !showAuthor;
  if (showAuthor) {
    p.author.textContent = authorName(conv, m);
    p.author.title = m.author;
    p.author.style.setProperty('--hue', String(hue(m.author || '')));
  }
  p.time.textContent = fmtTime(m.ts);
  p.time.dateTime = new Date(m.ts).toISOString();
  p.time.title = new Date(m.ts).toLocaleString();
  if (m.local) {
    if (m.state === 'failed') p.status.textContent = 'not sent';
    else p.status.textContent = m.upload && !m.upload.result ? 'uploading…' : 'sending…';
    p.status.title = '';
  } else if (conv.kind === 'dm' && m.mine) {
    p.status.textContent = m.delivered ? '✓✓' : '✓';
    p.status.title = m.delivered ? 'Delivered to their node' : 'Sent; not yet delivered';
  } else {
    p.status.textContent = '';
  }
  updateTimer(m);
  if (p.att && p.att._stale && m.file) {
    p.att._stale = false;
    mountFile(conv, p.att, m.file, mediaKind(m.file));
  }
  // Upload progress of an optimistic message.
  if (m.local && m.upload && !m.upload.result && m.state !== 'failed') {
    if (!p.progress) {
      p.progress = h('progress', { max: '1', value: '0', 'aria-label': 'Upload progress' });
      p.uploadLabel = h('span', { class: 'muted' });
      p.upload.replaceChildren(p.progress, p.uploadLabel);
    }
    p.progress.value = m.upload.progress;
    p.uploadLabel.textContent = `uploading ${Math.round(m.upload.progress * 100)}%`;
    p.upload.hidden = false;
  } else {
    p.upload.hidden = true;
  }
  if (m.local && m.state === 'failed') {
    // Keep the buttons (and the focus on them) when only the text changes.
    if (!p.retry) {
      p.failText = h('span', { class: 'fail-text' });
      p.retry = h('button', { type: 'button', class: 'link-btn', 'data-testid': 'retry', onclick: () => retryPending(conv, m) });
      p.discard = h('button', { type: 'button', class: 'link-btn', 'data-testid': 'discard', onclick: () => discardPending(conv, m) }, 'Discard');
      p.fail.replaceChildren(p.failText, ' ', p.retry, ' · ', p.discard);
    }
    p.failText.textContent = `Not sent${m.error ? `: ${m.error}` : ''}.${m.transient ? ' Trying again automatically…' : ''}`;
    p.retry.textContent = m.transient ? 'Retry now' : 'Retry';
    p.retry.setAttribute('aria-label', `${p.retry.textContent}: ${m.text || m.file?.name || 'message'}`);
    p.fail.hidden = false;
  } else {
    p.fail.hidden = true;
  }
}

function updateTimer(m) {
  const p = m._p;
  if (!p) return;
  if (m.expiresAt) {
    p.timer.hidden = false;
    p.timer.textContent = `disappears in ${fmtLeft(m.expiresAt - Date.now())}`;
  } else if (m.local && m.expiresIn) {
    p.timer.hidden = false;
    p.timer.textContent = `disappears ${fmtDuration(m.expiresIn)} after sending`;
  } else {
    p.timer.hidden = true;
  }
}

function tick() {
  const now = Date.now();
  for (const conv of S.convs.values()) {
    const dead = conv.msgs.filter((m) => m.expiresAt && m.expiresAt <= now);
    for (const m of dead) removeMsg(conv, m.id);
  }
  const conv = openConv();
  if (conv) for (const m of visibleMsgs(conv)) if (m.expiresAt) updateTimer(m);
}

// ---------------------------------------------------------------------------------------------
// Attachments

const Files = {
  urls: new Map(),       // cid → {url, type}: a blob in memory
  jobs: new Map(),       // cid → Promise of the above
  listeners: new Map(),  // cid → Set of fn(status)
};

function onFileProgress(st) {
  for (const fn of [...(Files.listeners.get(st.cid) || [])]) fn(st);
}

function waitForFile(cid, ms) {
  return new Promise((resolve) => {
    let set = Files.listeners.get(cid);
    if (!set) Files.listeners.set(cid, (set = new Set()));
    const fn = (st) => { set.delete(fn); clearTimeout(t); resolve(st); };
    const t = setTimeout(() => { set.delete(fn); resolve(null); }, ms);
    set.add(fn);
  });
}

/** The node's status of a file; null when the node does not know it (404: not held, not fetching). */
async function fileStatus(cid) {
  try {
    return await api(`/v1/files/${enc(cid)}`);
  } catch (e) {
    if (e.status === 404) return null;
    throw e;
  }
}

/** Makes sure the node holds the whole file, fetching it from peers if needed. */
// maxBytes (automatic loads only): the node drops the fetch if the file is larger — a
// message's claimed size is only its sender's word.
async function ensureHeld(f, onProgress, alive, maxBytes) {
  let st = await fileStatus(f.cid);
  if (st?.complete) return st;
  const limit = maxBytes ? `&max_bytes=${maxBytes}` : '';
  st = await api(`/v1/files/${enc(f.cid)}/fetch?name=${enc(f.name || '')}${limit}`, { method: 'POST' });
  const tooBig = () => new ApiError(413, 'larger than its message says: not loaded automatically');
  while (!st.complete) {
    if (!alive()) throw new ApiError(-1, 'gone');
    if (maxBytes && st.size && st.size > maxBytes) throw tooBig();
    onProgress(st);
    const ev = await waitForFile(f.cid, 3000);
    if (ev && ev.complete) { st = ev; continue; }
    const cur = await fileStatus(f.cid);
    if (cur === null && maxBytes) throw tooBig();
    st = cur || st;
  }
  return st;
}

/** The file's content as a blob URL (decrypted by the node when it has a key). */
function loadBlob(f, onProgress, alive, maxBytes) {
  const have = Files.urls.get(f.cid);
  if (have) return Promise.resolve(have);
  let job = Files.jobs.get(f.cid);
  if (job) return job;
  job = (async () => {
    await ensureHeld(f, (st) => onProgress('fetch', st), alive, maxBytes);
    const headers = authHeaders(f.key ? { 'x-samizdat-key': f.key } : {});
    let res;
    try {
      res = await fetch(`/v1/files/${enc(f.cid)}/content`, { credentials: 'omit', headers });
    } catch {
      setNodeDown(true);
      throw new ApiError(0, 'your node does not answer');
    }
    if (res.status === 401) { sessionExpired(); throw new ApiError(401, 'session expired'); }
    if (!res.ok) throw new ApiError(res.status, await errorText(res));
    const total = Number(res.headers.get('content-length')) || f.size || 0;
    const parts = [];
    let got = 0;
    if (res.body && res.body.getReader) {
      const reader = res.body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        parts.push(value);
        got += value.length;
        if (maxBytes && got > maxBytes) {
          reader.cancel().catch(() => {});
          throw new ApiError(413, 'larger than its message says: not loaded automatically');
        }
        onProgress('download', { got, total });
      }
    } else {
      parts.push(await res.arrayBuffer());
    }
    const type = safeType(f);
    const out = { url: URL.createObjectURL(new Blob(parts, { type })), type };
    Files.urls.set(f.cid, out);
    return out;
  })();
  Files.jobs.set(f.cid, job);
  job.finally(() => Files.jobs.delete(f.cid)).catch(() => {});
  return job;
}

function fileExt(name) {
  const e = (name || '').includes('.') ? name.split('.').pop() : '';
  return (e || 'file').slice(0, 4).toUpperCase();
}

function fileChip(f, { href, download, action, onAction, note } = {}) {
  const info = h('span', { class: 'att-info' },
    h('span', { class: 'att-name', title: f.name }, f.name || 'file'),
    h('span', { class: 'muted small' }, [fmtSize(f.size), note].filter(Boolean).join(' · ')));
  const chip = h('div', { class: 'file-chip' }, h('span', { class: 'file-ic', 'aria-hidden': 'true' }, fileExt(f.name)), info);
  if (href) chip.append(h('a', { class: 'btn small', href, download: download || f.name || 'file' }, 'Save'));
  else if (onAction) chip.append(h('button', { type: 'button', class: 'btn small', onclick: onAction }, action));
  return chip;
}

function attachmentEl(conv, m) {
  const f = m.file;
  const box = h('div', { class: 'att' });
  const kind = mediaKind(f);
  if (m.local) {
    if (kind === 'image' && f.localUrl) {
      box.append(h('img', { class: 'preview', src: f.localUrl, alt: f.name }));
    } else {
      box.append(fileChip(f));
    }
    return box;
  }
  mountFile(conv, box, f, kind);
  return box;
}

function mountFile(conv, box, f, kind) {
  const have = Files.urls.get(f.cid);
  if (have) { showLoaded(conv, box, f, kind, have); return; }
  if (kind === 'image' && (f.size || 0) <= AUTO_IMAGE_BYTES) { startLoad(conv, box, f, kind, false); return; }
  box.replaceChildren(fileChip(f, {
    action: kind === 'file' ? 'Download' : (kind === 'video' ? 'Load video' : 'Load audio'),
    onAction: () => startLoad(conv, box, f, kind, true),
  }));
}

function startLoad(conv, box, f, kind, asked) {
  const prog = h('progress', { max: '1', 'aria-label': `Progress of ${f.name}` });
  const label = h('span', { class: 'muted small' }, 'looking for it…');
  box.replaceChildren(h('div', { class: 'file-chip loading' },
    h('span', { class: 'file-ic', 'aria-hidden': 'true' }, fileExt(f.name)),
    h('span', { class: 'att-info' }, h('span', { class: 'att-name', title: f.name }, f.name || 'file'), label, prog)));
  const alive = () => box.isConnected || S.open === conv.key;
  const progress = (phase, st) => {
    if (phase === 'fetch') {
      if (st.chunks) { prog.value = st.have / st.chunks; label.textContent = `fetching from peers · ${fmtSize(st.bytes)} of ${fmtSize(st.size)}`; }
      else { prog.removeAttribute('value'); label.textContent = st.providers ? 'fetching from peers…' : 'looking for peers that have it…'; }
    } else {
      if (st.total) prog.value = st.got / st.total;
      label.textContent = `loading · ${fmtSize(st.got)} of ${fmtSize(st.total)}`;
    }
  };
  // Sealed attachments are 16 bytes a MiB larger than the file.
  const auto = asked ? undefined : AUTO_IMAGE_BYTES + Math.ceil(AUTO_IMAGE_BYTES / 4096) + 4096;
  loadBlob(f, progress, alive, auto).then((r) => {
    showLoaded(conv, box, f, kind, r);
    if (asked && kind === 'file') h('a', { href: r.url, download: f.name || 'file' }).click();
  }, (e) => loadFailed(conv, box, f, kind, e));
}

function loadFailed(conv, box, f, kind, e) {
  if (e.status === -1) {
    // The conversation was closed while it loaded: start again when it shows again.
    box._stale = true;
    box.replaceChildren(fileChip(f, { action: 'Load', onAction: () => startLoad(conv, box, f, kind, true) }));
    return;
  }
  box.replaceChildren(fileChip(f, {
    note: `could not load: ${e.message}`, action: 'Retry', onAction: () => startLoad(conv, box, f, kind, false),
  }));
}

function onMediaLoad() {
  const conv = openConv();
  if (conv && conv.stick) scrollToBottom();
}

function showLoaded(conv, box, f, kind, r) {
  if (kind === 'image') {
    const img = h('img', { class: 'preview', 'data-testid': 'preview', src: r.url, alt: f.name || 'image' });
    img.addEventListener('load', onMediaLoad);
    box.replaceChildren(h('button', {
      type: 'button', class: 'preview-btn', 'aria-label': `Open image ${f.name || ''}`,
      onclick: () => openImage(f, r.url),
    }, img));
  } else if (kind === 'video') {
    const v = h('video', { class: 'media', src: r.url, controls: true, preload: 'metadata' });
    v.addEventListener('loadedmetadata', onMediaLoad);
    box.replaceChildren(v, fileChip(f, { href: r.url }));
  } else if (kind === 'audio') {
    box.replaceChildren(h('audio', { class: 'media', src: r.url, controls: true }), fileChip(f, { href: r.url }));
  } else {
    box.replaceChildren(fileChip(f, { href: r.url }));
  }
}

function openImage(f, url) {
  $('dlg-image-title').textContent = f.name || 'Image';
  $('dlg-image-img').src = url;
  $('dlg-image-img').alt = f.name || 'image';
  $('dlg-image-save').href = url;
  $('dlg-image-save').setAttribute('download', f.name || 'image');
  openDialog('dlg-image');
}

// ---------------------------------------------------------------------------------------------
// Composer and sending

function canPost(conv) {
  if (conv.kind === 'channel') {
    const ch = S.channels.get(conv.id);
    if (!ch) return { ok: false, why: 'Loading…' };
    if (ch.role === 'follower') return { ok: false, why: 'Only the channel\'s owner and admins post here.' };
  }
  if (conv.kind === 'group') {
    const g = S.groups.get(conv.id);
    if (!g) return { ok: false, why: 'This group is not known to your node.' };
    if (!g.active) return { ok: false, why: 'You are no longer a member of this group.' };
  }
  return { ok: true };
}

function timerKey(conv) { return `samizdat:timer:${S.me.peer_id}:${conv.key}`; }

function renderComposer(conv) {
  const c = canPost(conv);
  $('composer-form').hidden = !c.ok;
  $('composer-note').hidden = c.ok;
  $('composer-note').textContent = c.ok ? '' : c.why;
  if (!c.ok) return;
  const form = $('composer-form');
  // Already set up for this conversation (an update of its role or members): keep what is typed.
  if (form.dataset.conv === conv.key) return;
  form.dataset.conv = conv.key;
  const ta = $('composer');
  ta.value = conv.draft || '';
  ta.placeholder = conv.kind === 'channel' ? 'Write a post…' : 'Write a message…';
  autosize();
  let t = '0';
  try { t = localStorage.getItem(timerKey(conv)) || '0'; } catch { /* off */ }
  $('timer').value = [...$('timer').options].some((o) => o.value === t) ? t : '0';
  updateTimerBtn();
  renderAttachChip(conv);
  showComposerError('');
}

function updateTimerBtn() {
  $('timer').closest('.timer-select').classList.toggle('on', $('timer').value !== '0');
}

function showComposerError(msg) {
  $('composer-error').textContent = msg;
  $('composer-error').hidden = !msg;
}

function autosize() {
  const ta = $('composer');
  ta.style.height = 'auto';
  ta.style.height = `${Math.min(ta.scrollHeight, 220)}px`;
}

function renderAttachChip(conv) {
  const box = $('composer-file');
  const f = conv.attach;
  if (!f) { box.hidden = true; box.replaceChildren(); return; }
  const kids = [];
  if (mediaKind({ name: f.name, mime: f.type }) === 'image') {
    if (!f._url) f._url = URL.createObjectURL(f);
    kids.push(h('img', { class: 'thumb', src: f._url, alt: '' }));
  } else {
    kids.push(h('span', { class: 'file-ic', 'aria-hidden': 'true' }, fileExt(f.name)));
  }
  kids.push(h('span', { class: 'att-info' }, h('span', { class: 'att-name' }, f.name), h('span', { class: 'muted small' }, fmtSize(f.size))));
  kids.push(h('button', {
    type: 'button', class: 'icon-btn', 'aria-label': `Remove attachment ${f.name}`,
    onclick: () => { conv.attach = null; renderAttachChip(conv); $('composer').focus(); },
  }, h('span', { class: 'ic ic-close', 'aria-hidden': 'true' })));
  box.replaceChildren(...kids);
  box.hidden = false;
}

function setAttachment(file) {
  const conv = openConv();
  if (!conv || !file || !canPost(conv).ok) return;
  conv.attach = file;
  renderAttachChip(conv);
  $('composer').focus();
}

function submitComposer() {
  const conv = openConv();
  if (!conv || !canPost(conv).ok) return;
  const ta = $('composer');
  const text = ta.value.replace(/\s+$/, '').replace(/^\n+/, '');
  const file = conv.attach;
  if (!text.trim() && !file) return;
  if (byteLen(text) > TEXT_LIMIT[conv.kind]) {
    showComposerError(`Too long: at most ${TEXT_LIMIT[conv.kind] / 1024} KiB of text here.`);
    return;
  }
  showComposerError('');
  const timer = Number($('timer').value) || 0;
  const m = {
    local: true,
    id: `local-${++S.localSeq}`,
    author: S.me.peer_id,
    mine: true,
    ts: Date.now(),
    text,
    expiresAt: null,
    expiresIn: timer || null,
    state: 'sending',
    file: file ? { name: file.name || 'file', size: file.size, mime: file.type || guessMime(file.name), localUrl: file._url || (mediaKind({ name: file.name, mime: file.type }) === 'image' ? URL.createObjectURL(file) : null) } : null,
    upload: file ? { file, progress: 0, result: null } : null,
  };
  conv.pending.push(m);
  conv.attach = null;
  conv.draft = '';
  ta.value = '';
  autosize();
  renderAttachChip(conv);
  renderMessages(conv, { toBottom: true });
  updateSideItem(conv);
  renderSidebarOrder(conv.kind);
  pump(conv);
}

/** Sends a conversation's pending messages, in order. */
async function pump(conv) {
  if (conv.pumping) return;
  conv.pumping = true;
  try {
    for (;;) {
      const m = conv.pending.find((x) => x.state === 'sending');
      if (!m) break;
      try {
        await deliver(conv, m);
      } catch (e) {
        if (!conv.pending.includes(m)) continue; // already confirmed by an event
        m.state = 'failed';
        m.error = e.message;
        m.transient = !!e.transient;
        if (m._el) updateMsgEl(conv, m);
        // The node is away: the rest would fail too; they wait (and are retried) in order.
        if (e.transient) break;
      }
    }
  } finally {
    conv.pumping = false;
  }
}

async function deliver(conv, m) {
  if (m.upload && !m.upload.result) {
    m.upload.result = await uploadFile(m.upload.file, conv.kind !== 'channel', (pr) => {
      m.upload.progress = pr;
      if (m._el) updateMsgEl(conv, m);
    });
    if (m._el) updateMsgEl(conv, m);
    // Keep the local copy: the sent message shows it without loading it back.
    if (m.file?.localUrl) Files.urls.set(m.upload.result.cid, { url: m.file.localUrl, type: m.file.mime });
  }
  const body = { text: m.text };
  if (m.expiresIn) body.expires_in_ms = m.expiresIn;
  const r = m.upload?.result;
  m.sentOnce = true;
  let view;
  if (conv.kind === 'channel') {
    if (r) body.file = r.cid;
    view = normPost(await api(`/v1/channels/${enc(conv.id)}/posts`, { method: 'POST', body }));
  } else {
    if (r) body.attachment = { cid: r.cid, key: r.key, name: r.name, size: r.size, mime: r.mime };
    if (conv.kind === 'dm') view = normDm(await api(`/v1/dm/${enc(conv.id)}`, { method: 'POST', body }));
    else view = normGroupMsg(await api(`/v1/groups/${enc(conv.id)}/messages`, { method: 'POST', body }));
  }
  if (conv.pending.includes(m)) dropPending(conv, m, view);
  else noteIncoming(conv, view, true);
  if (conv.kind === 'dm') {
    const d = S.dms.get(conv.id);
    if (d) { d.local = false; }
  }
}

/** Replaces an optimistic message by the node's view of it. */
function dropPending(conv, p, view) {
  const i = conv.pending.indexOf(p);
  if (i >= 0) conv.pending.splice(i, 1);
  if (view && !conv.byId.has(view.id)) {
    addMsg(conv, view);
    markRead(conv);
  }
  updateSideItem(conv);
  renderSidebarOrder(conv.kind);
  if (S.open === conv.key) renderMessages(conv, { toBottom: conv.stick });
}

/** The buttons of a failed message go away: keep the keyboard focus in the conversation. */
function keepFocus(m) {
  if (m._el && m._el.contains(document.activeElement) && !$('composer-form').hidden) $('composer').focus();
}

function retryPending(conv, m) {
  keepFocus(m);
  m.state = 'sending';
  m.error = null;
  if (m._el) updateMsgEl(conv, m);
  pump(conv);
}

function discardPending(conv, m) {
  keepFocus(m);
  const i = conv.pending.indexOf(m);
  if (i >= 0) conv.pending.splice(i, 1);
  updateSideItem(conv);
  if (S.open === conv.key) renderMessages(conv);
}

/** Tries failed messages again: those that failed for lack of an answer, or all when asked. */
function retryFailed(all) {
  for (const conv of S.convs.values()) {
    let any = false;
    for (const m of conv.pending) {
      if (m.state === 'failed' && (m.transient || all === 'manual')) {
        m.state = 'sending';
        if (m._el) updateMsgEl(conv, m);
        any = true;
      }
    }
    if (any || conv.pending.some((m) => m.state === 'sending')) pump(conv);
  }
}

// ---------------------------------------------------------------------------------------------
// Dialogs

function openDialog(id) {
  const d = $(id);
  for (const err of d.querySelectorAll('.form-error')) { err.hidden = true; err.textContent = ''; }
  if (!d.open) d.showModal();
  const first = d.querySelector('input, select, textarea, button:not([data-close])');
  if (first) first.focus();
}

function formError(form, msg) {
  const p = form.querySelector('.form-error');
  p.textContent = msg;
  p.hidden = !msg;
}

/** Wires a form: runs `fn` on submit with the submit button busy; shows its error. */
function onSubmit(form, fn) {
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const btn = form.querySelector('[type=submit]');
    if (btn.disabled) return;
    const label = btn.textContent;
    btn.disabled = true;
    btn.classList.add('busy');
    formError(form, '');
    try {
      await fn();
    } catch (err) {
      formError(form, err.message || String(err));
    } finally {
      btn.disabled = false;
      btn.classList.remove('busy');
      btn.textContent = label;
    }
  });
}

function setupDialogs() {
  for (const d of document.querySelectorAll('dialog')) {
    d.addEventListener('click', (e) => {
      if (e.target.closest('[data-close]')) { d.close(); return; }
      if (e.target !== d || e.detail === 0) return;
      // A click on the backdrop (outside the dialog's box) closes it.
      const r = d.getBoundingClientRect();
      if (e.clientX < r.left || e.clientX > r.right || e.clientY < r.top || e.clientY > r.bottom) d.close();
    });
  }
  $('btn-new-channel').addEventListener('click', () => openDialog('dlg-channel'));
  $('empty-new-channel').addEventListener('click', () => openDialog('dlg-channel'));
  $('btn-new-group').addEventListener('click', () => openDialog('dlg-group'));
  $('empty-new-group').addEventListener('click', () => openDialog('dlg-group'));
  const newDm = () => { renderDmPick(); openDialog('dlg-dm'); };
  $('btn-new-dm').addEventListener('click', newDm);
  $('empty-new-dm').addEventListener('click', newDm);
  $('contacts-new-dm').addEventListener('click', newDm);

  onSubmit($('create-channel-form'), async () => {
    const name = $('channel-name').value.trim();
    if (!name) throw new Error('A channel needs a name.');
    const ch = await api('/v1/channels', { method: 'POST', body: { name, description: $('channel-desc').value.trim() } });
    S.channels.set(ch.id, ch);
    const conv = getConv('channel', ch.id);
    conv.loaded = true;
    renderSidebar();
    $('dlg-channel').close();
    $('create-channel-form').reset();
    go(conv.hash);
    toast(`Channel ${ch.name || ''} created`);
  });

  onSubmit($('follow-form'), async () => {
    const target = $('follow-link').value.trim();
    if (!target) throw new Error('Paste an invite link.');
    const ch = await api('/v1/channels/follow', { method: 'POST', body: { target } });
    S.channels.set(ch.id, ch);
    renderSidebar();
    $('dlg-channel').close();
    $('follow-form').reset();
    go(getConv('channel', ch.id).hash);
    toast(`Following ${ch.name || shortId(ch.id)}`);
  });

  onSubmit($('create-group-form'), async () => {
    const name = $('group-name').value.trim();
    if (!name) throw new Error('A group needs a name.');
    const g = await api('/v1/groups', { method: 'POST', body: { name } });
    S.groups.set(g.id, g);
    const conv = getConv('group', g.id);
    conv.loaded = true;
    renderSidebar();
    $('dlg-group').close();
    $('create-group-form').reset();
    go(conv.hash);
    openMembers(g.id);
  });

  onSubmit($('new-dm-form'), async () => {
    const peer = $('new-dm-peer').value.trim();
    if (!PEER_RE.test(peer)) throw new Error('That is not a peer id (it looks like 12D3KooW…).');
    if (peer === S.me.peer_id) throw new Error('That is your own peer id.');
    $('dlg-dm').close();
    $('new-dm-form').reset();
    go(getConv('dm', peer).hash);
  });

  onSubmit($('add-contact-form'), async () => {
    const link = $('add-contact-link').value.trim();
    const name = $('add-contact-name').value.trim();
    const body = { link };
    if (name) body.name = name;
    const c = await api('/v1/contacts', { method: 'POST', body });
    S.contacts.set(c.peer_id, c);
    $('add-contact-form').reset();
    renderContacts();
    renderSidebar();
    toast(`Added ${c.name || shortId(c.peer_id)}`);
  });
}

function renderDmPick() {
  const box = $('dm-contact-pick');
  const list = [...S.contacts.values()];
  if (!list.length) { box.replaceChildren(); return; }
  box.replaceChildren(h('p', { class: 'field-label' }, 'Or pick a contact'),
    h('ul', { class: 'plain-list' }, list.map((c) => h('li', null, h('button', {
      type: 'button', class: 'contact-btn',
      onclick: () => { $('dlg-dm').close(); go(getConv('dm', c.peer_id).hash); },
    }, avatarEl(c.peer_id, c.name || c.peer_id, true), h('span', { class: 'att-info' },
      h('span', { class: 'att-name' }, c.name || shortId(c.peer_id)), h('span', { class: 'muted small mono' }, shortId(c.peer_id))))))));
}

function avatarEl(id, label, round) {
  const a = h('span', { class: `avatar small${round ? ' round' : ''}`, 'aria-hidden': 'true' });
  setAvatar(a, id, label);
  return a;
}

// ---------------------------------------------------------------------------------------------
// Group members

/** This page's invitations still waiting for the node's answer: gid → Map(peer → {since, withdrawn}). */
function invitesFor(gid) {
  let m = S.invites.get(gid);
  if (!m) S.invites.set(gid, (m = new Map()));
  return m;
}

/**
 * The group's pending invitations: those the node keeps (`invited`, on the owner's node; they
 * survive restarts) and those this page is still waiting on. Members are never listed twice.
 */
function pendingInvites(g) {
  const out = new Map();
  const inv = invitesFor(g.id);
  for (const p of g.invited || []) if (!g.members.includes(p)) out.set(p, inv.get(p) || null);
  for (const [p, st] of inv) if (!st.withdrawn && !g.members.includes(p)) out.set(p, st);
  return out;
}

/** Re-reads the groups (there is no GET of a single group): brings `invited` up to date. */
async function refreshGroups() {
  const list = await api('/v1/groups');
  for (const g of list) S.groups.set(g.id, g);
  return list;
}

function openMembers(gid) {
  const d = $('dlg-members');
  d.dataset.group = gid;
  d.dataset.error = '';
  renderMembers(gid);
  openDialog('dlg-members');
  refreshGroups().then(() => {
    if (d.open && d.dataset.group === gid) renderMembers(gid);
    const conv = openConv();
    if (conv && conv.kind === 'group' && conv.id === gid) renderConvHead(conv);
  }, () => {});
}

function memberRow(p, name, info, action) {
  return h('li', { class: 'member', 'data-peer': p },
    avatarEl(p, peerName(p), true),
    h('span', { class: 'att-info' }, name, info),
    action);
}

let membersTimer = 0;
function renderMembers(gid) {
  const g = S.groups.get(gid);
  const body = $('members-body');
  clearTimeout(membersTimer);
  if (!g) { body.replaceChildren(h('p', null, 'Unknown group.')); return; }
  $('dlg-members-title').textContent = `Members of ${g.name}`;
  const owner = g.role === 'owner' && g.active;
  const focusKey = document.activeElement?.dataset?.fkey;
  const kids = [];
  kids.push(h('ul', { class: 'plain-list members', 'data-testid': 'members' }, g.members.map((p) => memberRow(p,
    h('span', { class: 'att-name' }, p === S.me.peer_id ? 'You' : peerName(p),
      p === g.owner ? h('span', { class: 'tag' }, 'owner') : null),
    h('span', { class: 'muted small mono ellipsis', title: p }, p),
    owner && p !== S.me.peer_id ? h('button', {
      type: 'button', class: 'btn small danger', 'data-fkey': `rm-${p}`,
      'aria-label': `Remove ${peerName(p)}`, onclick: () => removeMember(gid, p),
    }, 'Remove') : null))));
  const pending = pendingInvites(g);
  if (pending.size) {
    let ticking = false;
    kids.push(h('h3', null, `Pending invitations (${pending.size})`));
    kids.push(h('ul', { class: 'plain-list members', 'data-testid': 'invitations' }, [...pending].map(([p, st]) => {
      const asking = st && !st.withdrawn;
      if (asking) ticking = true;
      const note = asking
        ? `inviting… ${Math.round((Date.now() - st.since) / 1000)} s (their node is being looked up; this can take up to 45 s)`
        : 'invited; not a member yet. The invitation goes out when their node is found online.';
      return memberRow(p,
        h('span', { class: 'att-name' }, peerName(p), h('span', { class: 'tag' }, 'invited')),
        h('span', { class: `small ${asking ? 'muted' : 'warn'}`, title: p }, note),
        h('span', { class: 'row' },
          asking ? h('span', { class: 'spinner', role: 'img', 'aria-label': 'inviting' }) : null,
          owner ? h('button', {
            type: 'button', class: 'btn small', 'data-fkey': `wd-${p}`, 'data-testid': 'withdraw',
            'aria-label': `Withdraw the invitation of ${peerName(p)}`, onclick: () => withdrawInvite(gid, p),
          }, 'Withdraw') : null));
    })));
    if (ticking) membersTimer = setTimeout(() => { if ($('dlg-members').open) renderMembers(gid); }, 1000);
  }
  if (owner) {
    const input = h('input', { type: 'text', list: 'contact-datalist', placeholder: '12D3KooW…', autocomplete: 'off', spellcheck: 'false', required: true, 'data-fkey': 'invite-input', 'data-testid': 'invite-peer' });
    const lastError = $('dlg-members').dataset.error || '';
    const err = h('p', { class: 'form-error', role: 'alert', hidden: !lastError }, lastError);
    const form = h('form', { class: 'stack' },
      h('h3', null, 'Invite a member'),
      h('label', null, 'Peer id ', input),
      h('div', { class: 'row' }, h('button', { type: 'submit', class: 'btn primary', 'data-fkey': 'invite-submit', 'data-testid': 'invite-submit' }, 'Invite')),
      err);
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const peer = input.value.trim();
      const fail = (msg) => { err.textContent = msg; err.hidden = false; input.focus(); };
      if (!PEER_RE.test(peer)) { fail('That is not a peer id.'); return; }
      if (peer === S.me.peer_id) { fail('That is you.'); return; }
      if (g.members.includes(peer)) { fail('Already a member.'); return; }
      if (pendingInvites(g).has(peer)) { fail('Already invited.'); return; }
      inviteMember(gid, peer);
    });
    kids.push(form);
  } else if (g.active) {
    kids.push(h('p', { class: 'muted small' }, `Only the owner (${peerName(g.owner)}) invites and removes members.`));
  }
  body.replaceChildren(...kids);
  if (focusKey) body.querySelector(`[data-fkey="${CSS.escape(focusKey)}"]`)?.focus();
}

async function inviteMember(gid, peer) {
  const inv = invitesFor(gid);
  const st = { since: Date.now(), withdrawn: false };
  inv.set(peer, st);
  $('dlg-members').dataset.error = '';
  renderMembers(gid);
  const conv = openConv();
  if (conv && conv.kind === 'group' && conv.id === gid) renderConvHead(conv);
  try {
    const g = await api(`/v1/groups/${enc(gid)}/members`, { method: 'POST', body: { peer_id: peer } });
    if (inv.get(peer) === st) inv.delete(peer);
    onGroupChanged(g);
    toast(`${peerName(peer)} is now a member`);
  } catch (e) {
    if (inv.get(peer) === st) inv.delete(peer);
    // Not found in time, the node keeps the invitation (then it is in `invited`); anything else
    // is a refusal to show.
    const list = await refreshGroups().catch(() => null);
    const g = S.groups.get(gid);
    if (list && g && !st.withdrawn && !g.members.includes(peer) && !(g.invited || []).includes(peer)) {
      $('dlg-members').dataset.error = `Could not invite ${peerName(peer)}: ${e.message}`;
    }
    if (g) onGroupChanged(g);
  }
  if ($('dlg-members').open && $('dlg-members').dataset.group === gid) renderMembers(gid);
}

async function withdrawInvite(gid, peer) {
  const st = invitesFor(gid).get(peer);
  if (st) st.withdrawn = true;
  await removeMember(gid, peer, true);
}

async function removeMember(gid, peer, withdraw = false) {
  if (!withdraw && !confirm(`Remove ${peerName(peer)} from the group? They will read nothing posted afterwards.`)) return;
  try {
    const g = await api(`/v1/groups/${enc(gid)}/members/${enc(peer)}`, { method: 'DELETE' });
    invitesFor(gid).delete(peer);
    onGroupChanged(g);
    if (withdraw) toast(`Invitation of ${peerName(peer)} withdrawn`);
  } catch (e) {
    toast(`Could not ${withdraw ? 'withdraw the invitation' : 'remove'}: ${e.message}`, { error: true });
    const st = invitesFor(gid).get(peer);
    if (st) st.withdrawn = false;
  }
  if ($('dlg-members').open) {
    renderMembers(gid);
    // The row went away: keep the focus in the dialog.
    if (!$('dlg-members').contains(document.activeElement)) $('members-body').querySelector('[data-fkey=invite-input]')?.focus();
  }
}

// ---------------------------------------------------------------------------------------------
// Contacts panel

async function loadCard() {
  if (S.card) return;
  try {
    S.card = await api('/v1/contacts/card');
    $('card-link').textContent = S.card.link;
    $('card-peer').textContent = S.card.peer_id;
    const svg = await api('/v1/contacts/card/qr.svg');
    $('card-qr').src = URL.createObjectURL(new Blob([svg], { type: 'image/svg+xml' }));
  } catch (e) {
    $('card-link').textContent = `could not load: ${e.message}`;
  }
}

function renderContacts() {
  const list = [...S.contacts.values()].sort((a, b) => (a.name || a.peer_id).localeCompare(b.name || b.peer_id));
  $('contact-list').replaceChildren(...list.map((c) => h('li', null, h('button', {
    type: 'button', class: 'contact-btn', onclick: () => go(getConv('dm', c.peer_id).hash),
    'aria-label': `Message ${c.name || c.peer_id}`,
  }, avatarEl(c.peer_id, c.name || c.peer_id, true), h('span', { class: 'att-info' },
    h('span', { class: 'att-name' }, c.name || shortId(c.peer_id)),
    h('span', { class: 'muted small mono' }, c.peer_id)),
  h('span', { class: 'muted small' }, S.connected.has(c.peer_id) ? 'connected' : '')))));
  $('contact-empty').hidden = list.length > 0;
  $('contact-datalist').replaceChildren(...list.map((c) => h('option', { value: c.peer_id }, c.name || '')));
}

// ---------------------------------------------------------------------------------------------
// Network

async function refreshNetSummary() {
  try {
    const [node, peers] = await Promise.all([api('/v1/node'), api('/v1/peers')]);
    S.node = node;
    S.peers = peers;
    S.connected = new Set(peers.map((p) => p.peer_id));
  } catch { /* shown by the banner */ }
  renderNetSummary();
}

function renderNetSummary() {
  const n = S.node;
  if (!n) return;
  const dot = $('net-dot');
  dot.className = `dot ${n.connected_peers > 0 ? (n.reachability === 'private' && !n.relays.length ? 'warn' : 'ok') : 'bad'}`;
  $('net-summary-text').textContent = `${n.connected_peers} ${n.connected_peers === 1 ? 'peer' : 'peers'} · ${n.reachability}`;
  $('btn-network').setAttribute('aria-label', `Network: ${n.connected_peers} peers connected, reachability ${n.reachability}`);
}

const REACH = {
  public: 'Other nodes can dial this one directly.',
  private: 'Behind a NAT or firewall: others reach this node through a relay.',
  unknown: 'Not known yet: other peers have not tried to dial back.',
};

function section(title, ...kids) {
  return h('section', { class: 'card' }, h('h3', null, title), ...kids);
}

function kv(label, value) {
  return h('div', { class: 'kv' }, h('span', { class: 'field-label' }, label), value instanceof Node ? value : h('span', null, String(value)));
}

function addrList(addrs, empty) {
  if (!addrs || !addrs.length) return h('p', { class: 'muted small' }, empty);
  return h('ul', { class: 'plain-list addrs' }, addrs.map((a) => h('li', null, h('code', { class: 'wrap-any' }, a))));
}

async function renderNetwork() {
  let node, peers, syncs;
  try {
    [node, peers] = await Promise.all([api('/v1/node'), api('/v1/peers')]);
    syncs = await Promise.all([...S.channels.keys()].map((id) => api(`/v1/channels/${enc(id)}/sync`).catch(() => null)));
  } catch (e) {
    $('net-updated').textContent = `could not refresh: ${e.message}`;
    return;
  }
  if (S.panel !== 'network') return;
  S.node = node;
  S.peers = peers;
  S.connected = new Set(peers.map((p) => p.peer_id));
  for (const st of syncs) if (st) S.sync.set(st.channel, st);
  renderNetSummary();
  const focusKey = document.activeElement?.dataset?.fkey;
  const body = $('net-body');
  const relayed = peers.filter((p) => p.relayed).length;
  const boots = node.bootstrap || [];
  const cards = [];
  cards.push(h('div', { class: 'stats' },
    h('div', { class: 'stat' }, h('span', { class: 'stat-num' }, String(node.connected_peers)), h('span', { class: 'muted small' }, 'peers connected')),
    h('div', { class: `stat reach-${node.reachability}` }, h('span', { class: 'stat-num' }, node.reachability), h('span', { class: 'muted small' }, 'reachability')),
    h('div', { class: 'stat' }, h('span', { class: 'stat-num' }, `${peers.length - relayed}/${relayed}`), h('span', { class: 'muted small' }, 'direct / relayed')),
    h('div', { class: 'stat' }, h('span', { class: 'stat-num' }, `${boots.filter((b) => b.connected).length}/${boots.length}`), h('span', { class: 'muted small' }, 'bootstrap connected'))));
  cards.push(section('This node',
    h('p', { class: 'muted small' }, REACH[node.reachability] || ''),
    kv('Peer id', h('span', { class: 'row' }, h('code', { class: 'wrap-any' }, node.peer_id),
      h('button', { type: 'button', class: 'btn small', 'data-fkey': 'copy-peer', onclick: () => copyText(node.peer_id) }, 'Copy'))),
    kv('Version', node.version),
    kv('Relays', addrList(node.relays, node.reachability === 'private' ? 'No relay reservation yet.' : 'None (not needed while reachable).')),
    h('details', null, h('summary', { 'data-fkey': 'addrs' }, 'Addresses'),
      kv('Listening', addrList(node.listen_addrs, 'none')),
      kv('External', addrList(node.external_addrs, 'none confirmed yet')),
      kv('To share', addrList(node.addrs, 'none'))),
    (node.graylisted_peers || node.refused_connections)
      ? h('p', { class: 'muted small' }, `Since start: ${node.graylisted_peers} peers disconnected for invalid gossip, ${node.refused_connections} incoming connections refused at a limit.`)
      : null));
  cards.push(section('Bootstrap peers', boots.length
    ? h('ul', { class: 'plain-list' }, boots.map((b) => h('li', { class: 'bootrow' },
      h('span', { class: `dot ${b.connected ? 'ok' : 'bad'}`, 'aria-hidden': 'true' }),
      h('code', { class: 'wrap-any' }, b.addr),
      h('span', { class: 'muted small' }, b.connected ? 'connected' : 'not connected'))))
    : h('p', { class: 'muted small' }, 'None configured. This node joins through its peer cache, the local network, and the addresses in links.')));
  cards.push(section(`Connected peers (${peers.length})`, peers.length
    ? h('table', { class: 'peers' },
      h('thead', null, h('tr', null, h('th', null, 'Peer'), h('th', null, 'Connection'), h('th', null, 'Agent'), h('th', null, 'Address'))),
      h('tbody', null, peers.map((p) => h('tr', null,
        h('td', { title: p.peer_id }, h('span', { class: 'mono' }, peerName(p.peer_id))),
        h('td', null, h('span', { class: `tag ${p.relayed ? 'relayed' : 'direct'}` }, p.relayed ? 'relayed' : 'direct')),
        h('td', { class: 'small' }, p.agent || '—'),
        h('td', { class: 'small' }, h('code', { class: 'wrap-any' }, (p.addrs || [])[0] || '—'))))))
    : h('p', { class: 'muted small' }, 'Not connected to any peer.')));
  const chans = [...S.channels.values()];
  cards.push(section('Channel history sync', chans.length
    ? h('ul', { class: 'plain-list syncs' }, chans.map((ch) => syncRow(ch, S.sync.get(ch.id))))
    : h('p', { class: 'muted small' }, 'No channels.')));
  body.replaceChildren(...cards);
  $('net-updated').textContent = `updated ${fmtTime(Date.now())}`;
  if (focusKey) body.querySelector(`[data-fkey="${CSS.escape(focusKey)}"]`)?.focus();
}

function syncRow(ch, st) {
  const li = h('li', { class: 'sync', 'data-channel': ch.id });
  fillSyncRow(li, ch, st);
  return li;
}

function fillSyncRow(li, ch, st) {
  const state = !st ? 'unknown' : st.syncing ? 'syncing' : st.complete ? 'complete' : 'incomplete';
  li.replaceChildren(
    h('span', { class: 'att-name' }, ch.name || shortId(ch.id)),
    h('progress', { max: String(Math.max(1, st?.known || 0)), value: String(st ? (st.known ? st.have : 1) : 0), 'aria-label': `Sync of ${ch.name || ch.id}` }),
    h('span', { class: 'muted small' }, st ? `${st.have}/${st.known} · ${state}` : state));
}

function updateNetSync(st) {
  const li = document.querySelector(`#net-body li.sync[data-channel="${CSS.escape(st.channel)}"]`);
  const ch = S.channels.get(st.channel);
  if (li && ch) fillSyncRow(li, ch, st);
}

// ---------------------------------------------------------------------------------------------
// Start

function setupUi() {
  E.scroller = $('scroller');
  E.list = $('msg-list');
  E.scroller.addEventListener('scroll', onScroll, { passive: true });
  $('jump-bottom').addEventListener('click', () => { scrollToBottom(); $('composer').focus(); });
  $('conv-back').addEventListener('click', () => go('#/'));
  for (const b of document.querySelectorAll('[data-back]')) b.addEventListener('click', () => go('#/'));
  $('btn-contacts').addEventListener('click', () => go('#/contacts'));
  $('btn-requests').addEventListener('click', () => go('#/requests'));
  $('btn-network').addEventListener('click', () => go('#/network'));
  $('card-copy').addEventListener('click', () => S.card && copyText(S.card.link));
  $('conv-filter').addEventListener('input', (e) => {
    S.filter = e.target.value.trim();
    for (const k of ['channel', 'group', 'dm']) renderSidebarOrder(k);
  });

  const ta = $('composer');
  ta.addEventListener('input', () => { autosize(); showComposerError(''); });
  ta.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && !e.altKey && !e.ctrlKey && !e.metaKey) {
      e.preventDefault();
      submitComposer();
    }
  });
  ta.addEventListener('paste', (e) => {
    const f = e.clipboardData?.files?.[0];
    if (f) { e.preventDefault(); setAttachment(f); }
  });
  $('composer-form').addEventListener('submit', (e) => { e.preventDefault(); submitComposer(); });
  $('attach-btn').addEventListener('click', () => $('attach').click());
  $('attach').addEventListener('change', (e) => {
    const f = e.target.files[0];
    e.target.value = '';
    if (f) setAttachment(f);
  });
  $('timer').addEventListener('change', () => {
    const conv = openConv();
    if (conv) try { localStorage.setItem(timerKey(conv), $('timer').value); } catch { /* off */ }
    updateTimerBtn();
  });
  const view = $('conv-view');
  view.addEventListener('dragover', (e) => { if (e.dataTransfer?.types?.includes('Files')) { e.preventDefault(); view.classList.add('drop'); } });
  view.addEventListener('dragleave', (e) => { if (e.target === view || !view.contains(e.relatedTarget)) view.classList.remove('drop'); });
  view.addEventListener('drop', (e) => {
    view.classList.remove('drop');
    const f = e.dataTransfer?.files?.[0];
    if (f) { e.preventDefault(); setAttachment(f); }
  });

  // Every conversation is a Tab stop (Enter opens it); arrow keys, Home and End are shortcuts
  // that move between conversations without going through the section headings' buttons.
  $('conv-lists').addEventListener('keydown', (e) => {
    if (!['ArrowDown', 'ArrowUp', 'Home', 'End'].includes(e.key)) return;
    const items = [...document.querySelectorAll('#conv-lists button.conv')];
    const i = items.indexOf(document.activeElement);
    if (i < 0) return;
    e.preventDefault();
    const j = e.key === 'Home' ? 0 : e.key === 'End' ? items.length - 1
      : Math.max(0, Math.min(items.length - 1, i + (e.key === 'ArrowDown' ? 1 : -1)));
    items[j].focus();
  });
  // Escape goes back to the list on a phone-sized window.
  document.addEventListener('keydown', (e) => {
    if (e.key !== 'Escape' || e.defaultPrevented || document.querySelector('dialog[open]')) return;
    if (matchMedia('(max-width: 760px)').matches && document.body.classList.contains('main-open')) go('#/');
  });
  document.addEventListener('visibilitychange', () => {
    const conv = openConv();
    if (conv && document.visibilityState === 'visible') markRead(conv);
  });
  window.addEventListener('online', () => retryFailed(true));
  window.addEventListener('hashchange', route);
  setupDialogs();
}

async function start() {
  setupUi();
  try {
    await takeLogin();
  } catch (e) {
    sessionExpired(`Login failed: ${e.message}`);
    return;
  }
  if (!session) {
    sessionExpired('Not logged in: run samizdat ui and open the link it prints.');
    return;
  }
  try {
    S.me = await api('/v1/node');
  } catch (e) {
    if (S.expired) return;
    $('boot').textContent = `Cannot reach your node: ${e.message}. Retrying…`;
    setTimeout(start2, 3000);
    return;
  }
  await boot();
}

async function start2() {
  try { S.me = await api('/v1/node'); } catch { if (!S.expired) setTimeout(start2, 3000); return; }
  await boot();
}

async function boot() {
  S.node = S.me;
  S.readKey = `samizdat:read:${S.me.peer_id}`;
  let firstRun = false;
  try {
    const raw = localStorage.getItem(S.readKey);
    firstRun = raw === null;
    S.read = raw ? JSON.parse(raw) || {} : {};
  } catch { S.read = {}; }
  try {
    await loadLists();
  } catch (e) {
    if (S.expired) return;
    $('boot').textContent = `Could not load: ${e.message}. Retrying…`;
    setTimeout(boot, 3000);
    return;
  }
  $('boot').hidden = true;
  $('app').hidden = false;
  renderSidebar();
  connectEvents();
  loadRequests();
  refreshNetSummary();
  route();
  primeUnread(firstRun);
  setInterval(tick, 1000);
  setInterval(() => retryFailed(false), RETRY_MS);
  setInterval(() => { if (S.panel === 'network') renderNetwork(); }, 4000);
  setInterval(() => { refreshNetSummary(); for (const c of kindConvs('channel')) updateSideItem(c); }, 15000);
  setInterval(() => {
    const conv = openConv();
    if (conv && conv.kind === 'channel' && document.visibilityState === 'visible') refreshChannel(conv, false);
  }, 10000);
}

start();
