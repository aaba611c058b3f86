// Loading conversations and lists from the node; unread counts.

import { enc, toast } from './dom.js';
import { api } from './api.js';
import {
  PAGE, S, getConv, openConv, isViewing, readTs, saveRead, markRead, normPost, normDm,
  normGroupMsg, cmpMsg, addMsg, removeMsg, hasOlder,
} from './state.js';
import { noteIncoming } from './events.js';
import { updateSideItem, renderSidebar, updateTitle } from './sidebar.js';
import { renderConvHead } from './conversation.js';
import { updateTopEl, renderMessages } from './messages.js';
import { renderContacts } from './contacts.js';
import { refreshNetSummary } from './network.js';

export async function loadConv(conv) {
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

export async function loadOlder(conv) {
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

export async function loadLists() {
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
export async function primeUnread(firstRun) {
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

export function recomputeUnread(conv, baseline) {
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

export async function reloadAll() {
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
