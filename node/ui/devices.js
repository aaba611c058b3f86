// The devices panel: this account's devices, a one-time link (with its QR code) for a new
// one, and revoking a lost one.

import { shortId, fmtWhen } from './format.js';
import { $, h, toast, copyText } from './dom.js';
import { api } from './api.js';

let link = null;

export async function loadDevices() {
  try {
    const list = await api('/v1/devices');
    $('device-list').replaceChildren(...list.map((d) => h('li', { class: 'device-row', 'data-testid': 'device' },
      h('span', { class: 'att-info' },
        h('span', { class: 'att-name' }, `${d.name || shortId(d.peer_id)}${d.this ? ' (this device)' : ''}`),
        h('span', { class: 'muted small mono' }, d.peer_id),
        h('span', { class: 'muted small' }, `linked ${fmtWhen(d.linked_at)}${d.connected ? ' · connected' : ''}${d.code ? ` · code ${d.code}` : ''}`)),
      d.this ? null : h('button', { type: 'button', class: 'btn danger', onclick: () => revoke(d) }, 'Revoke'))));
    $('device-empty').hidden = list.length > 0;
  } catch (e) {
    $('device-empty').hidden = false;
    $('device-empty').textContent = `could not load: ${e.message}`;
  }
}

async function revoke(d) {
  if (!confirm(`Revoke ${d.name || d.peer_id}? It will read nothing sent from now on, and nothing it sends will be accepted.`)) return;
  try {
    const r = await api(`/v1/devices/${encodeURIComponent(d.peer_id)}`, { method: 'DELETE' });
    toast(`revoked; ${r.groups.length} group(s) updated`);
  } catch (e) {
    toast(`could not revoke: ${e.message}`);
  }
  loadDevices();
}

export async function newLink() {
  try {
    link = await api('/v1/devices/link', { method: 'POST', body: {} });
    $('device-link').textContent = link.link;
    $('device-qr').src = URL.createObjectURL(new Blob([link.qr_svg], { type: 'image/svg+xml' }));
    $('device-link-box').hidden = false;
  } catch (e) {
    toast(`no link: ${e.message}`);
  }
}

export function setupDevices() {
  $('device-new-link').addEventListener('click', newLink);
  $('device-copy').addEventListener('click', () => link && copyText(link.link));
}
