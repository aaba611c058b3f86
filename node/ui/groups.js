// Group members: the members dialog, invitations, removal.

import { PEER_RE } from './format.js';
import { $, enc, h, toast, avatarEl } from './dom.js';
import { api } from './api.js';
import { S, openConv } from './state.js';
import { onGroupChanged } from './events.js';
import { peerName } from './sidebar.js';
import { renderConvHead } from './conversation.js';
import { openDialog } from './dialogs.js';

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
export function pendingInvites(g) {
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

export function openMembers(gid) {
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
export function renderMembers(gid) {
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
