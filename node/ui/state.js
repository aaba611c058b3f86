// The page's state: conversations, their messages (normalised), read markers.

import { guessMime } from './format.js';
import { enc } from './dom.js';
import { updateSideItem, updateTitle } from './sidebar.js';
import { renderMessages, updateMsgEl } from './messages.js';

export const PAGE = 50;

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

export const S = {
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

export function getConv(kind, id) {
  const key = `${kind}:${id}`;
  let c = S.convs.get(key);
  if (!c) { c = new Conv(kind, id); S.convs.set(key, c); }
  return c;
}

export function openConv() { return S.open ? S.convs.get(S.open) : null; }
export function isViewing(conv) { return S.open === conv.key && document.visibilityState === 'visible'; }

export function readTs(conv) { return S.read[conv.key] || 0; }
export function saveRead() {
  try { localStorage.setItem(S.readKey, JSON.stringify(S.read)); } catch { /* storage full or off */ }
}

export function markRead(conv) {
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

export function normPost(p) {
  return {
    id: p.id, author: p.author, mine: channelMine(p), ts: p.timestamp, text: p.text,
    expiresAt: p.expires_at ?? null,
    // The type the poster's node recorded decides how it shows; the name's extension is only a
    // guess for posts that carry none.
    file: p.file ? { cid: p.file.cid, name: p.file.name, size: p.file.size, mime: p.file.mime || guessMime(p.file.name) } : null,
  };
}

export function normDm(m) {
  return {
    id: m.id, author: m.from, mine: m.outgoing, ts: m.timestamp, text: m.text,
    expiresAt: m.expires_at ?? null, file: m.file || null, delivered: m.delivered,
  };
}

export function normGroupMsg(m) {
  return {
    id: m.id, author: m.author, mine: m.outgoing, ts: m.timestamp, text: m.text,
    expiresAt: m.expires_at ?? null, file: m.file || null,
  };
}

export function cmpMsg(a, b) { return a.ts - b.ts || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0); }

/** Adds or updates a message; returns true when it is new. */
export function addMsg(conv, m) {
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

export function removeMsg(conv, id) {
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

export function visibleMsgs(conv) {
  if (conv.kind === 'channel') return conv.msgs;
  return conv.msgs.slice(Math.max(0, conv.msgs.length - conv.shown));
}

export function hasOlder(conv) {
  return conv.kind === 'channel' ? !!conv.prev : conv.msgs.length > conv.shown;
}
