// The contacts panel: this node's card and the contact list.

import { shortId } from './format.js';
import { $, h, avatarEl } from './dom.js';
import { api } from './api.js';
import { S, getConv } from './state.js';
import { go } from './router.js';

export async function loadCard() {
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

export function renderContacts() {
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
