// Incoming messages and the node's event stream.

import { $ } from './dom.js';
import { authHeaders, readEvents, sessionExpired } from './api.js';
import {
  S, getConv, openConv, isViewing, readTs, markRead, normPost, normDm, normGroupMsg, cmpMsg,
  addMsg, removeMsg,
} from './state.js';
import { loadConv, loadLists, recomputeUnread, reloadAll } from './loading.js';
import { updateSideItem, renderSidebarOrder, renderSidebar, updateTitle } from './sidebar.js';
import { loadRequests } from './requests.js';
import { refreshOpenChannelSoon, renderConvHead, renderConvInfo } from './conversation.js';
import { updateTopEl, renderMessages, updateJump } from './messages.js';
import { onFileProgress } from './files.js';
import { renderComposer, dropPending } from './composer.js';
import { renderMembers } from './groups.js';
import { refreshNetSummary, renderNetwork, updateNetSync } from './network.js';

/** A message from history or an event: stores it, counts it unread, updates what shows it. */
export function noteIncoming(conv, m, live = true) {
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

export function onGroupChanged(g) {
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

export function connectEvents() {
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
