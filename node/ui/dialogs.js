// Dialogs: opening, form wiring, creating and following channels, groups, new messages,
// adding contacts.

import { shortId, PEER_RE } from './format.js';
import { $, h, toast, avatarEl } from './dom.js';
import { api } from './api.js';
import { S, getConv } from './state.js';
import { renderSidebar } from './sidebar.js';
import { go } from './router.js';
import { openMembers } from './groups.js';
import { renderContacts } from './contacts.js';

export function openDialog(id) {
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

export function setupDialogs() {
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
