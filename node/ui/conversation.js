// An open conversation: showing it, its header and channel info.

import { shortId } from './format.js';
import { $, enc, h, setAvatar, toast, copyText } from './dom.js';
import { api } from './api.js';
import { S, getConv, openConv, markRead } from './state.js';
import { loadConv, recomputeUnread } from './loading.js';
import { convTitle, updateSideItem, renderSidebarOrder, renderSidebar } from './sidebar.js';
import { go, hideMain, setOpen, updateFootActive } from './router.js';
import { E, updateTopEl, renderMessages, updateJump } from './messages.js';
import { renderComposer } from './composer.js';
import { pendingInvites, openMembers } from './groups.js';

export function showConv(kind, id) {
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
export async function refreshChannel(conv, composerToo) {
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
export function refreshOpenChannelSoon() {
  clearTimeout(channelRefreshTimer);
  channelRefreshTimer = setTimeout(() => {
    const conv = openConv();
    if (conv && conv.kind === 'channel') refreshChannel(conv, false);
  }, 1000);
}

// ---------------------------------------------------------------------------------------------
// Conversation header and info

export function renderConvHead(conv) {
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

export function renderConvInfo(conv) {
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
