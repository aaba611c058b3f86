// The sidebar: conversation names, the list items, their order, the unread title.

import { shortId, fmtWhen, mediaKind } from './format.js';
import { $, h, reconcile, setAvatar } from './dom.js';
import { S, getConv } from './state.js';
import { go } from './router.js';

const KIND_LABEL = { channel: 'Channel', group: 'Group', dm: 'Direct message' };

// ---------------------------------------------------------------------------------------------
// Sidebar

export function convTitle(conv) {
  if (conv.kind === 'channel') {
    const ch = S.channels.get(conv.id);
    return ch?.name || `Channel ${shortId(conv.id)}`;
  }
  if (conv.kind === 'group') return S.groups.get(conv.id)?.name || `Group ${shortId(conv.id)}`;
  return peerName(conv.id);
}

export function peerName(peer) {
  if (peer === S.me?.peer_id) return 'you';
  const c = S.contacts.get(peer);
  if (c?.name) return c.name;
  const d = S.dms.get(peer);
  if (d?.name) return d.name;
  return shortId(peer);
}

export function authorName(conv, m) {
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

export function updateSideItem(conv) {
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

export function kindConvs(kind) {
  if (kind === 'channel') return [...S.channels.keys()].map((id) => getConv('channel', id));
  if (kind === 'group') return [...S.groups.keys()].map((id) => getConv('group', id));
  return [...S.dms.keys()].map((id) => getConv('dm', id));
}

export function renderSidebarOrder(kind) {
  const f = S.filter.toLowerCase();
  const convs = kindConvs(kind)
    .filter((c) => !f || convTitle(c).toLowerCase().includes(f) || c.id.toLowerCase().includes(f))
    .sort((a, b) => activity(b) - activity(a) || convTitle(a).localeCompare(convTitle(b)));
  reconcile($(`list-${kind}`), convs.map((c) => sideItem(c).li));
  $(`empty-${kind}`).hidden = convs.length > 0 || !!f;
  $(`sec-${kind}`).classList.toggle('filtered-out', !!f && convs.length === 0);
}

export function renderSidebar() {
  for (const kind of ['channel', 'group', 'dm']) {
    for (const c of kindConvs(kind)) updateSideItem(c);
    renderSidebarOrder(kind);
  }
  updateTitle();
}

export function updateTitle() {
  let n = 0;
  for (const kind of ['channel', 'group', 'dm']) for (const c of kindConvs(kind)) n += unreadCount(c);
  document.title = n ? `(${n}) Samizdat` : 'Samizdat';
}
