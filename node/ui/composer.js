// The composer and sending: optimistic messages, uploads, retries.

import { fmtSize, guessMime, mediaKind, byteLen } from './format.js';
import { $, enc, h } from './dom.js';
import { api, uploadFile } from './api.js';
import { S, openConv, markRead, normPost, normDm, normGroupMsg, addMsg } from './state.js';
import { noteIncoming } from './events.js';
import { updateSideItem, renderSidebarOrder } from './sidebar.js';
import { renderMessages, updateMsgEl } from './messages.js';
import { Files, fileExt } from './files.js';

const TEXT_LIMIT = { channel: 16 * 1024, dm: 4096, group: 4096 };

// ---------------------------------------------------------------------------------------------
// Composer and sending

function canPost(conv) {
  if (conv.kind === 'channel') {
    const ch = S.channels.get(conv.id);
    if (!ch) return { ok: false, why: 'Loading…' };
    if (ch.role === 'follower') return { ok: false, why: 'Only the channel\'s owner and admins post here.' };
  }
  if (conv.kind === 'group') {
    const g = S.groups.get(conv.id);
    if (!g) return { ok: false, why: 'This group is not known to your node.' };
    if (!g.active) return { ok: false, why: 'You are no longer a member of this group.' };
  }
  return { ok: true };
}

export function timerKey(conv) { return `samizdat:timer:${S.me.peer_id}:${conv.key}`; }

export function renderComposer(conv) {
  const c = canPost(conv);
  $('composer-form').hidden = !c.ok;
  $('composer-note').hidden = c.ok;
  $('composer-note').textContent = c.ok ? '' : c.why;
  if (!c.ok) return;
  const form = $('composer-form');
  // Already set up for this conversation (an update of its role or members): keep what is typed.
  if (form.dataset.conv === conv.key) return;
  form.dataset.conv = conv.key;
  const ta = $('composer');
  ta.value = conv.draft || '';
  ta.placeholder = conv.kind === 'channel' ? 'Write a post…' : 'Write a message…';
  autosize();
  let t = '0';
  try { t = localStorage.getItem(timerKey(conv)) || '0'; } catch { /* off */ }
  $('timer').value = [...$('timer').options].some((o) => o.value === t) ? t : '0';
  updateTimerBtn();
  renderAttachChip(conv);
  showComposerError('');
}

export function updateTimerBtn() {
  $('timer').closest('.timer-select').classList.toggle('on', $('timer').value !== '0');
}

export function showComposerError(msg) {
  $('composer-error').textContent = msg;
  $('composer-error').hidden = !msg;
}

export function autosize() {
  const ta = $('composer');
  ta.style.height = 'auto';
  ta.style.height = `${Math.min(ta.scrollHeight, 220)}px`;
}

function renderAttachChip(conv) {
  const box = $('composer-file');
  const f = conv.attach;
  if (!f) { box.hidden = true; box.replaceChildren(); return; }
  const kids = [];
  if (mediaKind({ name: f.name, mime: f.type }) === 'image') {
    if (!f._url) f._url = URL.createObjectURL(f);
    kids.push(h('img', { class: 'thumb', src: f._url, alt: '' }));
  } else {
    kids.push(h('span', { class: 'file-ic', 'aria-hidden': 'true' }, fileExt(f.name)));
  }
  kids.push(h('span', { class: 'att-info' }, h('span', { class: 'att-name' }, f.name), h('span', { class: 'muted small' }, fmtSize(f.size))));
  kids.push(h('button', {
    type: 'button', class: 'icon-btn', 'aria-label': `Remove attachment ${f.name}`,
    onclick: () => { conv.attach = null; renderAttachChip(conv); $('composer').focus(); },
  }, h('span', { class: 'ic ic-close', 'aria-hidden': 'true' })));
  box.replaceChildren(...kids);
  box.hidden = false;
}

export function setAttachment(file) {
  const conv = openConv();
  if (!conv || !file || !canPost(conv).ok) return;
  conv.attach = file;
  renderAttachChip(conv);
  $('composer').focus();
}

export function submitComposer() {
  const conv = openConv();
  if (!conv || !canPost(conv).ok) return;
  const ta = $('composer');
  const text = ta.value.replace(/\s+$/, '').replace(/^\n+/, '');
  const file = conv.attach;
  if (!text.trim() && !file) return;
  if (byteLen(text) > TEXT_LIMIT[conv.kind]) {
    showComposerError(`Too long: at most ${TEXT_LIMIT[conv.kind] / 1024} KiB of text here.`);
    return;
  }
  showComposerError('');
  const timer = Number($('timer').value) || 0;
  const m = {
    local: true,
    id: `local-${++S.localSeq}`,
    author: S.me.peer_id,
    mine: true,
    ts: Date.now(),
    text,
    expiresAt: null,
    expiresIn: timer || null,
    state: 'sending',
    file: file ? { name: file.name || 'file', size: file.size, mime: file.type || guessMime(file.name), localUrl: file._url || (mediaKind({ name: file.name, mime: file.type }) === 'image' ? URL.createObjectURL(file) : null) } : null,
    upload: file ? { file, progress: 0, result: null } : null,
  };
  conv.pending.push(m);
  conv.attach = null;
  conv.draft = '';
  ta.value = '';
  autosize();
  renderAttachChip(conv);
  renderMessages(conv, { toBottom: true });
  updateSideItem(conv);
  renderSidebarOrder(conv.kind);
  pump(conv);
}

/** Sends a conversation's pending messages, in order. */
async function pump(conv) {
  if (conv.pumping) return;
  conv.pumping = true;
  try {
    for (;;) {
      const m = conv.pending.find((x) => x.state === 'sending');
      if (!m) break;
      try {
        await deliver(conv, m);
      } catch (e) {
        if (!conv.pending.includes(m)) continue; // already confirmed by an event
        m.state = 'failed';
        m.error = e.message;
        m.transient = !!e.transient;
        if (m._el) updateMsgEl(conv, m);
        // The node is away: the rest would fail too; they wait (and are retried) in order.
        if (e.transient) break;
      }
    }
  } finally {
    conv.pumping = false;
  }
}

async function deliver(conv, m) {
  if (m.upload && !m.upload.result) {
    m.upload.result = await uploadFile(m.upload.file, conv.kind !== 'channel', (pr) => {
      m.upload.progress = pr;
      if (m._el) updateMsgEl(conv, m);
    });
    if (m._el) updateMsgEl(conv, m);
    // Keep the local copy: the sent message shows it without loading it back.
    if (m.file?.localUrl) Files.urls.set(m.upload.result.cid, { url: m.file.localUrl, type: m.file.mime });
  }
  const body = { text: m.text };
  if (m.expiresIn) body.expires_in_ms = m.expiresIn;
  const r = m.upload?.result;
  m.sentOnce = true;
  let view;
  if (conv.kind === 'channel') {
    if (r) body.file = r.cid;
    view = normPost(await api(`/v1/channels/${enc(conv.id)}/posts`, { method: 'POST', body }));
  } else {
    if (r) body.attachment = { cid: r.cid, key: r.key, name: r.name, size: r.size, mime: r.mime };
    if (conv.kind === 'dm') view = normDm(await api(`/v1/dm/${enc(conv.id)}`, { method: 'POST', body }));
    else view = normGroupMsg(await api(`/v1/groups/${enc(conv.id)}/messages`, { method: 'POST', body }));
  }
  if (conv.pending.includes(m)) dropPending(conv, m, view);
  else noteIncoming(conv, view, true);
  if (conv.kind === 'dm') {
    const d = S.dms.get(conv.id);
    if (d) { d.local = false; }
  }
}

/** Replaces an optimistic message by the node's view of it. */
export function dropPending(conv, p, view) {
  const i = conv.pending.indexOf(p);
  if (i >= 0) conv.pending.splice(i, 1);
  if (view && !conv.byId.has(view.id)) {
    addMsg(conv, view);
    markRead(conv);
  }
  updateSideItem(conv);
  renderSidebarOrder(conv.kind);
  if (S.open === conv.key) renderMessages(conv, { toBottom: conv.stick });
}

/** The buttons of a failed message go away: keep the keyboard focus in the conversation. */
function keepFocus(m) {
  if (m._el && m._el.contains(document.activeElement) && !$('composer-form').hidden) $('composer').focus();
}

export function retryPending(conv, m) {
  keepFocus(m);
  m.state = 'sending';
  m.error = null;
  if (m._el) updateMsgEl(conv, m);
  pump(conv);
}

export function discardPending(conv, m) {
  keepFocus(m);
  const i = conv.pending.indexOf(m);
  if (i >= 0) conv.pending.splice(i, 1);
  updateSideItem(conv);
  if (S.open === conv.key) renderMessages(conv);
}

/** Tries failed messages again: those that failed for lack of an answer, or all when asked. */
export function retryFailed(all) {
  for (const conv of S.convs.values()) {
    let any = false;
    for (const m of conv.pending) {
      if (m.state === 'failed' && (m.transient || all === 'manual')) {
        m.state = 'sending';
        if (m._el) updateMsgEl(conv, m);
        any = true;
      }
    }
    if (any || conv.pending.some((m) => m.state === 'sending')) pump(conv);
  }
}
