// Attachments: fetching files through the node, showing images, video, audio, downloads.

import { fmtSize, mediaKind, safeType } from './format.js';
import { $, enc, h } from './dom.js';
import { ApiError, errorText, authHeaders, api, sessionExpired, setNodeDown } from './api.js';
import { S, openConv } from './state.js';
import { scrollToBottom } from './messages.js';
import { openDialog } from './dialogs.js';

const AUTO_IMAGE_BYTES = 32 * 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Attachments

export const Files = {
  urls: new Map(),       // cid → {url, type}: a blob in memory
  jobs: new Map(),       // cid → Promise of the above
  listeners: new Map(),  // cid → Set of fn(status)
};

export function onFileProgress(st) {
  for (const fn of [...(Files.listeners.get(st.cid) || [])]) fn(st);
}

function waitForFile(cid, ms) {
  return new Promise((resolve) => {
    let set = Files.listeners.get(cid);
    if (!set) Files.listeners.set(cid, (set = new Set()));
    const fn = (st) => { set.delete(fn); clearTimeout(t); resolve(st); };
    const t = setTimeout(() => { set.delete(fn); resolve(null); }, ms);
    set.add(fn);
  });
}

/** The node's status of a file; null when the node does not know it (404: not held, not fetching). */
async function fileStatus(cid) {
  try {
    return await api(`/v1/files/${enc(cid)}`);
  } catch (e) {
    if (e.status === 404) return null;
    throw e;
  }
}

/** Makes sure the node holds the whole file, fetching it from peers if needed. */
// maxBytes (automatic loads only): the node drops the fetch if the file is larger — a
// message's claimed size is only its sender's word.
async function ensureHeld(f, onProgress, alive, maxBytes) {
  let st = await fileStatus(f.cid);
  if (st?.complete) return st;
  const limit = maxBytes ? `&max_bytes=${maxBytes}` : '';
  st = await api(`/v1/files/${enc(f.cid)}/fetch?name=${enc(f.name || '')}${limit}`, { method: 'POST' });
  const tooBig = () => new ApiError(413, 'larger than its message says: not loaded automatically');
  while (!st.complete) {
    if (!alive()) throw new ApiError(-1, 'gone');
    if (maxBytes && st.size && st.size > maxBytes) throw tooBig();
    onProgress(st);
    const ev = await waitForFile(f.cid, 3000);
    if (ev && ev.complete) { st = ev; continue; }
    const cur = await fileStatus(f.cid);
    if (cur === null && maxBytes) throw tooBig();
    st = cur || st;
  }
  return st;
}

/** The file's content as a blob URL (decrypted by the node when it has a key). */
function loadBlob(f, onProgress, alive, maxBytes) {
  const have = Files.urls.get(f.cid);
  if (have) return Promise.resolve(have);
  let job = Files.jobs.get(f.cid);
  if (job) return job;
  job = (async () => {
    await ensureHeld(f, (st) => onProgress('fetch', st), alive, maxBytes);
    const headers = authHeaders(f.key ? { 'x-samizdat-key': f.key } : {});
    let res;
    try {
      res = await fetch(`/v1/files/${enc(f.cid)}/content`, { credentials: 'omit', headers });
    } catch {
      setNodeDown(true);
      throw new ApiError(0, 'your node does not answer');
    }
    if (res.status === 401) { sessionExpired(); throw new ApiError(401, 'session expired'); }
    if (!res.ok) throw new ApiError(res.status, await errorText(res));
    const total = Number(res.headers.get('content-length')) || f.size || 0;
    const parts = [];
    let got = 0;
    if (res.body && res.body.getReader) {
      const reader = res.body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        parts.push(value);
        got += value.length;
        if (maxBytes && got > maxBytes) {
          reader.cancel().catch(() => {});
          throw new ApiError(413, 'larger than its message says: not loaded automatically');
        }
        onProgress('download', { got, total });
      }
    } else {
      parts.push(await res.arrayBuffer());
    }
    const type = safeType(f);
    const out = { url: URL.createObjectURL(new Blob(parts, { type })), type };
    Files.urls.set(f.cid, out);
    return out;
  })();
  Files.jobs.set(f.cid, job);
  job.finally(() => Files.jobs.delete(f.cid)).catch(() => {});
  return job;
}

export function fileExt(name) {
  const e = (name || '').includes('.') ? name.split('.').pop() : '';
  return (e || 'file').slice(0, 4).toUpperCase();
}

function fileChip(f, { href, download, action, onAction, note } = {}) {
  const info = h('span', { class: 'att-info' },
    h('span', { class: 'att-name', title: f.name }, f.name || 'file'),
    h('span', { class: 'muted small' }, [fmtSize(f.size), note].filter(Boolean).join(' · ')));
  const chip = h('div', { class: 'file-chip' }, h('span', { class: 'file-ic', 'aria-hidden': 'true' }, fileExt(f.name)), info);
  if (href) chip.append(h('a', { class: 'btn small', href, download: download || f.name || 'file' }, 'Save'));
  else if (onAction) chip.append(h('button', { type: 'button', class: 'btn small', onclick: onAction }, action));
  return chip;
}

export function attachmentEl(conv, m) {
  const f = m.file;
  const box = h('div', { class: 'att' });
  const kind = mediaKind(f);
  if (m.local) {
    if (kind === 'image' && f.localUrl) {
      box.append(h('img', { class: 'preview', src: f.localUrl, alt: f.name }));
    } else {
      box.append(fileChip(f));
    }
    return box;
  }
  mountFile(conv, box, f, kind);
  return box;
}

export function mountFile(conv, box, f, kind) {
  const have = Files.urls.get(f.cid);
  if (have) { showLoaded(conv, box, f, kind, have); return; }
  if (kind === 'image' && (f.size || 0) <= AUTO_IMAGE_BYTES) { startLoad(conv, box, f, kind, false); return; }
  box.replaceChildren(fileChip(f, {
    action: kind === 'file' ? 'Download' : (kind === 'video' ? 'Load video' : 'Load audio'),
    onAction: () => startLoad(conv, box, f, kind, true),
  }));
}

function startLoad(conv, box, f, kind, asked) {
  const prog = h('progress', { max: '1', 'aria-label': `Progress of ${f.name}` });
  const label = h('span', { class: 'muted small' }, 'looking for it…');
  box.replaceChildren(h('div', { class: 'file-chip loading' },
    h('span', { class: 'file-ic', 'aria-hidden': 'true' }, fileExt(f.name)),
    h('span', { class: 'att-info' }, h('span', { class: 'att-name', title: f.name }, f.name || 'file'), label, prog)));
  const alive = () => box.isConnected || S.open === conv.key;
  const progress = (phase, st) => {
    if (phase === 'fetch') {
      if (st.chunks) { prog.value = st.have / st.chunks; label.textContent = `fetching from peers · ${fmtSize(st.bytes)} of ${fmtSize(st.size)}`; }
      else { prog.removeAttribute('value'); label.textContent = st.providers ? 'fetching from peers…' : 'looking for peers that have it…'; }
    } else {
      if (st.total) prog.value = st.got / st.total;
      label.textContent = `loading · ${fmtSize(st.got)} of ${fmtSize(st.total)}`;
    }
  };
  // Sealed attachments are 16 bytes a MiB larger than the file.
  const auto = asked ? undefined : AUTO_IMAGE_BYTES + Math.ceil(AUTO_IMAGE_BYTES / 4096) + 4096;
  loadBlob(f, progress, alive, auto).then((r) => {
    showLoaded(conv, box, f, kind, r);
    if (asked && kind === 'file') h('a', { href: r.url, download: f.name || 'file' }).click();
  }, (e) => loadFailed(conv, box, f, kind, e));
}

function loadFailed(conv, box, f, kind, e) {
  if (e.status === -1) {
    // The conversation was closed while it loaded: start again when it shows again.
    box._stale = true;
    box.replaceChildren(fileChip(f, { action: 'Load', onAction: () => startLoad(conv, box, f, kind, true) }));
    return;
  }
  box.replaceChildren(fileChip(f, {
    note: `could not load: ${e.message}`, action: 'Retry', onAction: () => startLoad(conv, box, f, kind, false),
  }));
}

function onMediaLoad() {
  const conv = openConv();
  if (conv && conv.stick) scrollToBottom();
}

function showLoaded(conv, box, f, kind, r) {
  if (kind === 'image') {
    const img = h('img', { class: 'preview', 'data-testid': 'preview', src: r.url, alt: f.name || 'image' });
    img.addEventListener('load', onMediaLoad);
    box.replaceChildren(h('button', {
      type: 'button', class: 'preview-btn', 'aria-label': `Open image ${f.name || ''}`,
      onclick: () => openImage(f, r.url),
    }, img));
  } else if (kind === 'video') {
    const v = h('video', { class: 'media', src: r.url, controls: true, preload: 'metadata' });
    v.addEventListener('loadedmetadata', onMediaLoad);
    box.replaceChildren(v, fileChip(f, { href: r.url }));
  } else if (kind === 'audio') {
    box.replaceChildren(h('audio', { class: 'media', src: r.url, controls: true }), fileChip(f, { href: r.url }));
  } else {
    box.replaceChildren(fileChip(f, { href: r.url }));
  }
}

function openImage(f, url) {
  $('dlg-image-title').textContent = f.name || 'Image';
  $('dlg-image-img').src = url;
  $('dlg-image-img').alt = f.name || 'image';
  $('dlg-image-save').href = url;
  $('dlg-image-save').setAttribute('download', f.name || 'image');
  openDialog('dlg-image');
}
