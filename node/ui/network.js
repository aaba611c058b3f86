// The network panel and the sidebar's network summary.

import { shortId, fmtTime } from './format.js';
import { $, enc, h, copyText } from './dom.js';
import { api } from './api.js';
import { S } from './state.js';
import { peerName } from './sidebar.js';

export async function refreshNetSummary() {
  try {
    const [node, peers] = await Promise.all([api('/v1/node'), api('/v1/peers')]);
    S.node = node;
    S.peers = peers;
    S.connected = new Set(peers.map((p) => p.peer_id));
  } catch { /* shown by the banner */ }
  renderNetSummary();
}

function renderNetSummary() {
  const n = S.node;
  if (!n) return;
  const dot = $('net-dot');
  dot.className = `dot ${n.connected_peers > 0 ? (n.reachability === 'private' && !n.relays.length ? 'warn' : 'ok') : 'bad'}`;
  $('net-summary-text').textContent = `${n.connected_peers} ${n.connected_peers === 1 ? 'peer' : 'peers'} · ${n.reachability}`;
  $('btn-network').title = $('net-summary-text').textContent;
  $('btn-network').setAttribute('aria-label', `Network: ${n.connected_peers} peers connected, reachability ${n.reachability}`);
}

const REACH = {
  public: 'Other nodes can dial this one directly.',
  private: 'Behind a NAT or firewall: others reach this node through a relay.',
  unknown: 'Not known yet: other peers have not tried to dial back.',
};

function section(title, ...kids) {
  return h('section', { class: 'card' }, h('h3', null, title), ...kids);
}

function kv(label, value) {
  return h('div', { class: 'kv' }, h('span', { class: 'field-label' }, label), value instanceof Node ? value : h('span', null, String(value)));
}

function addrList(addrs, empty) {
  if (!addrs || !addrs.length) return h('p', { class: 'muted small' }, empty);
  return h('ul', { class: 'plain-list addrs' }, addrs.map((a) => h('li', null, h('code', { class: 'wrap-any' }, a))));
}

export async function renderNetwork() {
  let node, peers, syncs;
  try {
    [node, peers] = await Promise.all([api('/v1/node'), api('/v1/peers')]);
    syncs = await Promise.all([...S.channels.keys()].map((id) => api(`/v1/channels/${enc(id)}/sync`).catch(() => null)));
  } catch (e) {
    $('net-updated').textContent = `could not refresh: ${e.message}`;
    return;
  }
  if (S.panel !== 'network') return;
  S.node = node;
  S.peers = peers;
  S.connected = new Set(peers.map((p) => p.peer_id));
  for (const st of syncs) if (st) S.sync.set(st.channel, st);
  renderNetSummary();
  const focusKey = document.activeElement?.dataset?.fkey;
  const body = $('net-body');
  const relayed = peers.filter((p) => p.relayed).length;
  const boots = node.bootstrap || [];
  const cards = [];
  cards.push(h('div', { class: 'stats' },
    h('div', { class: 'stat' }, h('span', { class: 'stat-num' }, String(node.connected_peers)), h('span', { class: 'muted small' }, 'peers connected')),
    h('div', { class: `stat reach-${node.reachability}` }, h('span', { class: 'stat-num' }, node.reachability), h('span', { class: 'muted small' }, 'reachability')),
    h('div', { class: 'stat' }, h('span', { class: 'stat-num' }, `${peers.length - relayed}/${relayed}`), h('span', { class: 'muted small' }, 'direct / relayed')),
    h('div', { class: 'stat' }, h('span', { class: 'stat-num' }, `${boots.filter((b) => b.connected).length}/${boots.length}`), h('span', { class: 'muted small' }, 'bootstrap connected'))));
  cards.push(section('This node',
    h('p', { class: 'muted small' }, REACH[node.reachability] || ''),
    kv('Peer id', h('span', { class: 'row' }, h('code', { class: 'wrap-any' }, node.peer_id),
      h('button', { type: 'button', class: 'btn small', 'data-fkey': 'copy-peer', onclick: () => copyText(node.peer_id) }, 'Copy'))),
    kv('Version', node.version),
    kv('Relays', addrList(node.relays, node.reachability === 'private' ? 'No relay reservation yet.' : 'None (not needed while reachable).')),
    h('details', null, h('summary', { 'data-fkey': 'addrs' }, 'Addresses'),
      kv('Listening', addrList(node.listen_addrs, 'none')),
      kv('External', addrList(node.external_addrs, 'none confirmed yet')),
      kv('To share', addrList(node.addrs, 'none'))),
    (node.graylisted_peers || node.refused_connections)
      ? h('p', { class: 'muted small' }, `Since start: ${node.graylisted_peers} peers disconnected for invalid gossip, ${node.refused_connections} incoming connections refused at a limit.`)
      : null));
  cards.push(section('Bootstrap peers', boots.length
    ? h('ul', { class: 'plain-list' }, boots.map((b) => h('li', { class: 'bootrow' },
      h('span', { class: `dot ${b.connected ? 'ok' : 'bad'}`, 'aria-hidden': 'true' }),
      h('code', { class: 'wrap-any' }, b.addr),
      h('span', { class: 'muted small' }, b.connected ? 'connected' : 'not connected'))))
    : h('p', { class: 'muted small' }, 'None configured. This node joins through its peer cache, the local network, and the addresses in links.')));
  cards.push(section(`Connected peers (${peers.length})`, peers.length
    ? h('table', { class: 'peers' },
      h('thead', null, h('tr', null, h('th', null, 'Peer'), h('th', null, 'Connection'), h('th', null, 'Agent'), h('th', null, 'Address'))),
      h('tbody', null, peers.map((p) => h('tr', null,
        h('td', { title: p.peer_id }, h('span', { class: 'mono' }, peerName(p.peer_id))),
        h('td', null, h('span', { class: `tag ${p.relayed ? 'relayed' : 'direct'}` }, p.relayed ? 'relayed' : 'direct')),
        h('td', { class: 'small' }, p.agent || '—'),
        h('td', { class: 'small' }, h('code', { class: 'wrap-any' }, (p.addrs || [])[0] || '—'))))))
    : h('p', { class: 'muted small' }, 'Not connected to any peer.')));
  const chans = [...S.channels.values()];
  cards.push(section('Channel history sync', chans.length
    ? h('ul', { class: 'plain-list syncs' }, chans.map((ch) => syncRow(ch, S.sync.get(ch.id))))
    : h('p', { class: 'muted small' }, 'No channels.')));
  body.replaceChildren(...cards);
  $('net-updated').textContent = `updated ${fmtTime(Date.now())}`;
  if (focusKey) body.querySelector(`[data-fkey="${CSS.escape(focusKey)}"]`)?.focus();
}

function syncRow(ch, st) {
  const li = h('li', { class: 'sync', 'data-channel': ch.id });
  fillSyncRow(li, ch, st);
  return li;
}

function fillSyncRow(li, ch, st) {
  const state = !st ? 'unknown' : st.syncing ? 'syncing' : st.complete ? 'complete' : 'incomplete';
  li.replaceChildren(
    h('span', { class: 'att-name' }, ch.name || shortId(ch.id)),
    h('progress', { max: String(Math.max(1, st?.known || 0)), value: String(st ? (st.known ? st.have : 1) : 0), 'aria-label': `Sync of ${ch.name || ch.id}` }),
    h('span', { class: 'muted small' }, st ? `${st.have}/${st.known} · ${state}` : state));
}

export function updateNetSync(st) {
  const li = document.querySelector(`#net-body li.sync[data-channel="${CSS.escape(st.channel)}"]`);
  const ch = S.channels.get(st.channel);
  if (li && ch) fillSyncRow(li, ch, st);
}
