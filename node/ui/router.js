// Routing: the address's fragment decides what the main area shows.

import { $ } from './dom.js';
import { api } from './api.js';
import { S } from './state.js';
import { updateSideItem } from './sidebar.js';
import { loadRequests } from './requests.js';
import { showConv } from './conversation.js';
import { loadCard, renderContacts } from './contacts.js';
import { renderNetwork } from './network.js';
import { loadDevices } from './devices.js';

export function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

export function route() {
  if (S.expired || !S.me) return;
  const parts = location.hash.replace(/^#\/?/, '').split('/');
  const [a, kind] = parts;
  const id = decodeURIComponent(parts.slice(2).join('/'));
  if (a === 'c' && ['channel', 'group', 'dm'].includes(kind) && id) showConv(kind, id);
  else if (a === 'contacts' || a === 'network' || a === 'requests' || a === 'devices') showPanel(a);
  else showNothing();
}

export function hideMain() {
  $('placeholder').hidden = true;
  $('conv-view').hidden = true;
  $('panel-contacts').hidden = true;
  $('panel-devices').hidden = true;
  $('panel-network').hidden = true;
  $('panel-requests').hidden = true;
}

export function setOpen(key) {
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
  if (name === 'devices') loadDevices();
}

export function updateFootActive() {
  $('btn-contacts').classList.toggle('active', S.panel === 'contacts');
  $('btn-devices').classList.toggle('active', S.panel === 'devices');
  $('btn-network').classList.toggle('active', S.panel === 'network');
}
