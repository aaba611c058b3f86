// The message list: rendering, scrolling, links, message elements, disappearing timers.

import { fmtLeft, fmtDuration, fmtTime, dayKey, dayLabel, mediaKind } from './format.js';
import { $, h, reconcile, hue } from './dom.js';
import { S, openConv, removeMsg, visibleMsgs, hasOlder } from './state.js';
import { loadOlder } from './loading.js';
import { authorName } from './sidebar.js';
import { go } from './router.js';
import { showConv } from './conversation.js';
import { attachmentEl, mountFile } from './files.js';
import { retryPending, discardPending } from './composer.js';
import { openDialog } from './dialogs.js';

/** Elements of the conversation view, looked up once at start (app.js). */
export const E = {};

// ---------------------------------------------------------------------------------------------
// Messages

function topEl(conv) {
  if (!conv.topEl) conv.topEl = h('div', { class: 'list-top' });
  updateTopEl(conv);
  return conv.topEl;
}

export function updateTopEl(conv) {
  const el = conv.topEl;
  if (!el) return;
  if (!conv.loaded && conv.error) {
    el.replaceChildren(h('p', { class: 'form-error' }, `Could not load: ${conv.error.message}`),
      h('button', { type: 'button', class: 'btn small', onclick: () => { conv.error = null; showConv(conv.kind, conv.id); } }, 'Try again'));
  } else if (!conv.loaded || conv.loadingOlder) {
    el.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  } else if (hasOlder(conv)) {
    el.replaceChildren(h('button', { type: 'button', class: 'btn small', onclick: () => loadOlder(conv) }, 'Show older messages'));
  } else {
    let text = 'This is the beginning of the conversation.';
    if (conv.kind === 'channel') {
      const st = S.sync.get(conv.id);
      text = st && !st.complete ? 'Older posts are still being fetched from other followers…' : 'This is the beginning of the channel.';
    } else if (conv.kind === 'dm') text = 'Messages here are end-to-end encrypted: only your node and theirs can read them.';
    else text = 'Messages here are end-to-end encrypted for the group\'s members. New members read only what is posted after they join.';
    el.replaceChildren(h('p', { class: 'muted' }, text));
  }
}

function dayEl(conv, ts) {
  const k = dayKey(ts);
  let el = conv.days.get(k);
  if (!el) {
    el = h('div', { class: 'day', role: 'separator' }, h('span', null, dayLabel(ts)));
    conv.days.set(k, el);
  }
  return el;
}

export function renderMessages(conv, { toBottom = false } = {}) {
  if (S.open !== conv.key) return;
  const sc = E.scroller;
  const stick = toBottom || conv.stick;
  // Remember the first message in view, to keep it in place when things are added above.
  let anchor = null;
  if (!stick) {
    for (const el of E.list.children) {
      if (!el.classList.contains('msg')) continue;
      if (el.offsetTop + el.offsetHeight > sc.scrollTop) { anchor = { el, off: el.offsetTop - sc.scrollTop }; break; }
    }
  }
  const nodes = [topEl(conv)];
  let prevDay = null, prevAuthor = null, prevTs = 0;
  const all = visibleMsgs(conv).concat(conv.pending);
  for (const m of all) {
    const dk = dayKey(m.ts);
    if (dk !== prevDay) { nodes.push(dayEl(conv, m.ts)); prevDay = dk; prevAuthor = null; }
    const el = msgEl(conv, m);
    el.classList.toggle('cont', m.author === prevAuthor && m.ts - prevTs < 300000);
    nodes.push(el);
    prevAuthor = m.author;
    prevTs = m.ts;
  }
  if (conv.loaded && all.length === 0) {
    nodes.push(h('div', { class: 'list-empty-conv' }, conv.kind === 'channel' && S.channels.get(conv.id)?.role === 'follower'
      ? 'No posts yet.' : 'No messages yet. Say hello!'));
  }
  reconcile(E.list, nodes);
  if (stick) scrollToBottom();
  else if (anchor && anchor.el.isConnected) sc.scrollTop = anchor.el.offsetTop - anchor.off;
  // Not enough to fill the view: fetch more so it can scroll.
  if (conv.loaded && hasOlder(conv) && sc.scrollHeight <= sc.clientHeight + 50) {
    setTimeout(() => loadOlder(conv), 0);
  }
}

export function scrollToBottom() {
  E.scroller.scrollTop = E.scroller.scrollHeight;
  const conv = openConv();
  if (conv) { conv.stick = true; conv.newBelow = 0; updateJump(); }
}

export function updateJump() {
  const conv = openConv();
  const show = conv && !conv.stick;
  $('jump-bottom').hidden = !show;
  $('jump-count').textContent = conv && conv.newBelow ? String(conv.newBelow) : '';
}

export function onScroll() {
  const conv = openConv();
  if (!conv) return;
  const sc = E.scroller;
  conv.stick = sc.scrollHeight - sc.scrollTop - sc.clientHeight < 40;
  if (conv.stick) conv.newBelow = 0;
  updateJump();
  if (sc.scrollTop < 300 && conv.loaded && hasOlder(conv)) loadOlder(conv);
}

const LINK_RE = /(https?:\/\/[^\s<>"'`]+|samizdat:\/\/(?:channel|contact)\/[A-Za-z0-9]+)/gi;

function linkify(text) {
  const frag = document.createDocumentFragment();
  let last = 0;
  for (const mt of text.matchAll(LINK_RE)) {
    const url = mt[0].replace(/[.,;:!?)\]}'"]+$/, '');
    frag.append(text.slice(last, mt.index));
    if (/^samizdat:/i.test(url)) {
      frag.append(h('a', {
        href: '#', class: 'slink',
        onclick: (e) => { e.preventDefault(); openSamizdatLink(url); },
      }, url));
    } else {
      frag.append(h('a', { href: url, target: '_blank', rel: 'noopener noreferrer' }, url));
    }
    last = mt.index + url.length;
  }
  frag.append(text.slice(last));
  return frag;
}

function openSamizdatLink(url) {
  if (/^samizdat:\/\/channel\//i.test(url)) {
    openDialog('dlg-channel');
    $('follow-link').value = url;
    $('follow-link').focus();
  } else {
    go('#/contacts');
    $('add-contact-link').value = url;
    $('add-contact-link').focus();
  }
}

function msgEl(conv, m) {
  if (!m._el) buildMsgEl(conv, m);
  updateMsgEl(conv, m);
  return m._el;
}

function buildMsgEl(conv, m) {
  const p = {};
  p.author = h('span', { class: 'author' });
  p.text = h('div', { class: 'text', 'data-testid': 'message-text' });
  p.timer = h('span', { class: 'timer', 'data-testid': 'timer', hidden: true });
  p.time = h('time', { class: 'time' });
  p.status = h('span', { class: 'status' });
  p.fail = h('div', { class: 'fail', 'data-testid': 'send-failed', hidden: true });
  p.att = m.file ? attachmentEl(conv, m) : null;
  p.upload = h('div', { class: 'upload', hidden: true });
  const bubble = h('div', { class: 'bubble' }, p.author, p.att, p.upload, p.text,
    h('div', { class: 'meta' }, p.timer, p.time, p.status));
  const root = h('div', { class: `msg kind-${conv.kind}`, 'data-testid': 'message', 'data-id': m.id }, bubble, p.fail);
  p.text.append(linkify(m.text || ''));
  p.text.hidden = !m.text;
  m._el = root;
  m._p = p;
}

export function updateMsgEl(conv, m) {
  const p = m._p;
  const root = m._el;
  root.classList.toggle('mine', !!m.mine);
  root.classList.toggle('pending', !!m.local && m.state !== 'failed');
  root.classList.toggle('failed', !!m.local && m.state === 'failed');
  const showAuthor = conv.kind !== 'dm';
  p.author.hidden = !showAuthor;
  if (showAuthor) {
    p.author.textContent = authorName(conv, m);
    p.author.title = m.author;
    p.author.style.setProperty('--hue', String(hue(m.author || '')));
  }
  p.time.textContent = fmtTime(m.ts);
  p.time.dateTime = new Date(m.ts).toISOString();
  p.time.title = new Date(m.ts).toLocaleString();
  if (m.local) {
    if (m.state === 'failed') p.status.textContent = 'not sent';
    else p.status.textContent = m.upload && !m.upload.result ? 'uploading…' : 'sending…';
    p.status.title = '';
  } else if (conv.kind === 'dm' && m.mine) {
    p.status.textContent = m.delivered ? '✓✓' : '✓';
    p.status.title = m.delivered ? 'Delivered to their node' : 'Sent; not yet delivered';
  } else {
    p.status.textContent = '';
  }
  updateTimer(m);
  if (p.att && p.att._stale && m.file) {
    p.att._stale = false;
    mountFile(conv, p.att, m.file, mediaKind(m.file));
  }
  // Upload progress of an optimistic message.
  if (m.local && m.upload && !m.upload.result && m.state !== 'failed') {
    if (!p.progress) {
      p.progress = h('progress', { max: '1', value: '0', 'aria-label': 'Upload progress' });
      p.uploadLabel = h('span', { class: 'muted' });
      p.upload.replaceChildren(p.progress, p.uploadLabel);
    }
    p.progress.value = m.upload.progress;
    p.uploadLabel.textContent = `uploading ${Math.round(m.upload.progress * 100)}%`;
    p.upload.hidden = false;
  } else {
    p.upload.hidden = true;
  }
  if (m.local && m.state === 'failed') {
    // Keep the buttons (and the focus on them) when only the text changes.
    if (!p.retry) {
      p.failText = h('span', { class: 'fail-text' });
      p.retry = h('button', { type: 'button', class: 'link-btn', 'data-testid': 'retry', onclick: () => retryPending(conv, m) });
      p.discard = h('button', { type: 'button', class: 'link-btn', 'data-testid': 'discard', onclick: () => discardPending(conv, m) }, 'Discard');
      p.fail.replaceChildren(p.failText, ' ', p.retry, ' · ', p.discard);
    }
    p.failText.textContent = `Not sent${m.error ? `: ${m.error}` : ''}.${m.transient ? ' Trying again automatically…' : ''}`;
    p.retry.textContent = m.transient ? 'Retry now' : 'Retry';
    p.retry.setAttribute('aria-label', `${p.retry.textContent}: ${m.text || m.file?.name || 'message'}`);
    p.fail.hidden = false;
  } else {
    p.fail.hidden = true;
  }
}

function updateTimer(m) {
  const p = m._p;
  if (!p) return;
  if (m.expiresAt) {
    p.timer.hidden = false;
    p.timer.textContent = `disappears in ${fmtLeft(m.expiresAt - Date.now())}`;
  } else if (m.local && m.expiresIn) {
    p.timer.hidden = false;
    p.timer.textContent = `disappears ${fmtDuration(m.expiresIn)} after sending`;
  } else {
    p.timer.hidden = true;
  }
}

export function tick() {
  const now = Date.now();
  for (const conv of S.convs.values()) {
    const dead = conv.msgs.filter((m) => m.expiresAt && m.expiresAt <= now);
    for (const m of dead) removeMsg(conv, m.id);
  }
  const conv = openConv();
  if (conv) for (const m of visibleMsgs(conv)) if (m.expiresAt) updateTimer(m);
}
