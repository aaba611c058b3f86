// Message requests: the sidebar button and the panel.

import { fmtWhen } from './format.js';
import { $, enc, h } from './dom.js';
import { api } from './api.js';
import { S, getConv } from './state.js';
import { loadLists } from './loading.js';
import { renderSidebar } from './sidebar.js';
import { go } from './router.js';

/** Loads the pending requests and shows their count; the panel too when it is open. */
export async function loadRequests() {
  try { S.requests = await api('/v1/requests'); } catch { return; }
  renderRequests();
}

function renderRequests() {
  const n = S.requests.length;
  $('btn-requests').hidden = n === 0;
  $('requests-count').textContent = String(n);
  $('btn-requests').setAttribute('aria-label', `${n} message request${n === 1 ? '' : 's'}`);
  if (S.panel !== 'requests') return;
  $('request-empty').hidden = n > 0;
  $('request-list').replaceChildren(...S.requests.map((r) => {
    const what = r.kind === 'group' ? `invites you to the group “${r.preview}”` : 'wants to message you';
    const err = h('p', { class: 'form-error', role: 'alert', hidden: true });
    const act = (action) => async () => {
      err.hidden = true;
      try {
        await api(`/v1/requests/${enc(r.peer_id)}/${action}`, { method: 'POST' });
      } catch (e) {
        err.textContent = e.message;
        err.hidden = false;
        return;
      }
      await loadRequests();
      if (action === 'accept') {
        await loadLists().catch(() => {});
        renderSidebar();
        if (r.kind === 'dm') go(getConv('dm', r.peer_id).hash);
        else if (r.group_id) go(getConv('group', r.group_id).hash);
      }
    };
    return h('li', { class: 'request', 'data-testid': 'request', 'data-peer': r.peer_id },
      h('div', { class: 'request-text' },
        h('code', { class: 'wrap-any' }, r.peer_id),
        h('span', { class: 'muted small' }, ` ${what} · ${fmtWhen(r.received_at)}`),
        r.kind === 'dm' && r.preview ? h('p', { class: 'request-preview' }, r.preview) : null),
      h('div', { class: 'row' },
        h('button', { type: 'button', class: 'btn primary small', 'data-testid': 'request-accept', onclick: act('accept') }, 'Accept'),
        h('button', { type: 'button', class: 'btn small', 'data-testid': 'request-decline', onclick: act('decline') }, 'Decline'),
        h('button', { type: 'button', class: 'btn small danger', 'data-testid': 'request-block', onclick: act('block') }, 'Block')),
      err);
  }));
}
