// Samizdat web UI: a client of the node's local API, served by the node itself.
// Plain ES module, no dependencies, no build step. Message content is only ever put in the page
// as text (textContent), never as HTML.

import { $, copyText } from './dom.js';
import { session, takeLogin, api, sessionExpired } from './api.js';
import { S, openConv, markRead } from './state.js';
import { loadLists, primeUnread } from './loading.js';
import { connectEvents } from './events.js';
import { updateSideItem, kindConvs, renderSidebarOrder, renderSidebar } from './sidebar.js';
import { go, route } from './router.js';
import { loadRequests } from './requests.js';
import { refreshChannel } from './conversation.js';
import { E, scrollToBottom, onScroll, tick } from './messages.js';
import {
  timerKey, updateTimerBtn, showComposerError, autosize, setAttachment, submitComposer,
  retryFailed,
} from './composer.js';
import { setupDialogs } from './dialogs.js';
import { setupDevices } from './devices.js';
import { refreshNetSummary, renderNetwork } from './network.js';

const RETRY_MS = 5000;

// ---------------------------------------------------------------------------------------------
// Start

function setupUi() {
  E.scroller = $('scroller');
  E.list = $('msg-list');
  E.scroller.addEventListener('scroll', onScroll, { passive: true });
  $('jump-bottom').addEventListener('click', () => { scrollToBottom(); $('composer').focus(); });
  $('conv-back').addEventListener('click', () => go('#/'));
  for (const b of document.querySelectorAll('[data-back]')) b.addEventListener('click', () => go('#/'));
  $('btn-contacts').addEventListener('click', () => go('#/contacts'));
  $('btn-devices').addEventListener('click', () => go('#/devices'));
  setupDevices();
  $('btn-requests').addEventListener('click', () => go('#/requests'));
  $('btn-network').addEventListener('click', () => go('#/network'));
  $('card-copy').addEventListener('click', () => S.card && copyText(S.card.link));
  $('conv-filter').addEventListener('input', (e) => {
    S.filter = e.target.value.trim();
    for (const k of ['channel', 'group', 'dm']) renderSidebarOrder(k);
  });

  const ta = $('composer');
  ta.addEventListener('input', () => { autosize(); showComposerError(''); });
  ta.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && !e.altKey && !e.ctrlKey && !e.metaKey) {
      e.preventDefault();
      submitComposer();
    }
  });
  ta.addEventListener('paste', (e) => {
    const f = e.clipboardData?.files?.[0];
    if (f) { e.preventDefault(); setAttachment(f); }
  });
  $('composer-form').addEventListener('submit', (e) => { e.preventDefault(); submitComposer(); });
  $('attach-btn').addEventListener('click', () => $('attach').click());
  $('attach').addEventListener('change', (e) => {
    const f = e.target.files[0];
    e.target.value = '';
    if (f) setAttachment(f);
  });
  $('timer').addEventListener('change', () => {
    const conv = openConv();
    if (conv) try { localStorage.setItem(timerKey(conv), $('timer').value); } catch { /* off */ }
    updateTimerBtn();
  });
  const view = $('conv-view');
  view.addEventListener('dragover', (e) => { if (e.dataTransfer?.types?.includes('Files')) { e.preventDefault(); view.classList.add('drop'); } });
  view.addEventListener('dragleave', (e) => { if (e.target === view || !view.contains(e.relatedTarget)) view.classList.remove('drop'); });
  view.addEventListener('drop', (e) => {
    view.classList.remove('drop');
    const f = e.dataTransfer?.files?.[0];
    if (f) { e.preventDefault(); setAttachment(f); }
  });

  // Every conversation is a Tab stop (Enter opens it); arrow keys, Home and End are shortcuts
  // that move between conversations without going through the section headings' buttons.
  $('conv-lists').addEventListener('keydown', (e) => {
    if (!['ArrowDown', 'ArrowUp', 'Home', 'End'].includes(e.key)) return;
    const items = [...document.querySelectorAll('#conv-lists button.conv')];
    const i = items.indexOf(document.activeElement);
    if (i < 0) return;
    e.preventDefault();
    const j = e.key === 'Home' ? 0 : e.key === 'End' ? items.length - 1
      : Math.max(0, Math.min(items.length - 1, i + (e.key === 'ArrowDown' ? 1 : -1)));
    items[j].focus();
  });
  // Escape goes back to the list on a phone-sized window.
  document.addEventListener('keydown', (e) => {
    if (e.key !== 'Escape' || e.defaultPrevented || document.querySelector('dialog[open]')) return;
    if (matchMedia('(max-width: 760px)').matches && document.body.classList.contains('main-open')) go('#/');
  });
  document.addEventListener('visibilitychange', () => {
    const conv = openConv();
    if (conv && document.visibilityState === 'visible') markRead(conv);
  });
  window.addEventListener('online', () => retryFailed(true));
  window.addEventListener('hashchange', route);
  setupDialogs();
}

async function start() {
  setupUi();
  try {
    await takeLogin();
  } catch (e) {
    sessionExpired(`Login failed: ${e.message}`);
    return;
  }
  if (!session) {
    sessionExpired('Not logged in: run samizdat ui and open the link it prints.');
    return;
  }
  try {
    S.me = await api('/v1/node');
  } catch (e) {
    if (S.expired) return;
    $('boot').textContent = `Cannot reach your node: ${e.message}. Retrying…`;
    setTimeout(start2, 3000);
    return;
  }
  await boot();
}

async function start2() {
  try { S.me = await api('/v1/node'); } catch { if (!S.expired) setTimeout(start2, 3000); return; }
  await boot();
}

async function boot() {
  S.node = S.me;
  S.readKey = `samizdat:read:${S.me.peer_id}`;
  let firstRun = false;
  try {
    const raw = localStorage.getItem(S.readKey);
    firstRun = raw === null;
    S.read = raw ? JSON.parse(raw) || {} : {};
  } catch { S.read = {}; }
  try {
    await loadLists();
  } catch (e) {
    if (S.expired) return;
    $('boot').textContent = `Could not load: ${e.message}. Retrying…`;
    setTimeout(boot, 3000);
    return;
  }
  $('boot').hidden = true;
  $('app').hidden = false;
  renderSidebar();
  connectEvents();
  loadRequests();
  refreshNetSummary();
  route();
  primeUnread(firstRun);
  setInterval(tick, 1000);
  setInterval(() => retryFailed(false), RETRY_MS);
  setInterval(() => { if (S.panel === 'network') renderNetwork(); }, 4000);
  setInterval(() => { refreshNetSummary(); for (const c of kindConvs('channel')) updateSideItem(c); }, 15000);
  setInterval(() => {
    const conv = openConv();
    if (conv && conv.kind === 'channel' && document.visibilityState === 'visible') refreshChannel(conv, false);
  }, 10000);
}

start();
