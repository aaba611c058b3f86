// The node's API: requests with the browser session, login, uploads, the event stream's
// parser, session expiry and node liveness.

import { $, enc } from './dom.js';
import { S } from './state.js';
import { retryFailed } from './composer.js';

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
  /** Worth trying again later: the node did not answer, or was busy. */
  get transient() { return this.status === 0 || this.status >= 500 || this.status === 408 || this.status === 429; }
}

export async function errorText(res) {
  try {
    const j = await res.json();
    if (j && typeof j.error === 'string') return j.error;
  } catch { /* not JSON */ }
  return `${res.status} ${res.statusText}`.trim();
}

// The session: kept in sessionStorage (this origin only, port included; gone with the tab)
// and sent in a header, never as a cookie, which browsers would also hand to other local ports.
const SESSION_KEY = 'samizdat:session';
export let session = null;
try { session = sessionStorage.getItem(SESSION_KEY); } catch { /* storage disabled */ }

export function authHeaders(headers = {}) {
  return session ? { ...headers, 'x-samizdat-session': session } : { ...headers };
}

/** Spends the one-time login token `samizdat ui` put in the address's fragment, if any. */
export async function takeLogin() {
  const m = /^#login=([0-9a-fA-F]{1,128})$/.exec(location.hash);
  if (!m) return;
  history.replaceState(null, '', '/');
  const res = await fetch('/ui/session', {
    method: 'POST', credentials: 'omit', cache: 'no-store',
    headers: { 'content-type': 'application/json' }, body: JSON.stringify({ login: m[1] }),
  });
  if (!res.ok) throw new ApiError(res.status, await errorText(res));
  const j = await res.json();
  session = j.session;
  try { sessionStorage.setItem(SESSION_KEY, session); } catch { /* kept in memory only */ }
}

export async function api(path, { method = 'GET', body, headers = {} } = {}) {
  if (S.expired) throw new ApiError(401, 'session expired');
  const opts = { method, credentials: 'omit', headers: authHeaders(headers) };
  if (body !== undefined) {
    opts.headers['content-type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, opts);
  } catch {
    setNodeDown(true);
    throw new ApiError(0, 'your node does not answer');
  }
  setNodeDown(false);
  if (res.status === 401) {
    sessionExpired();
    throw new ApiError(401, 'session expired');
  }
  if (!res.ok) throw new ApiError(res.status, await errorText(res));
  if (res.status === 204) return null;
  const ct = res.headers.get('content-type') || '';
  return ct.includes('json') ? res.json() : res.text();
}

/** Uploads a file with progress; resolves to {cid, size, name, mime, key?}. */
export function uploadFile(file, priv, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    const name = file.name || 'file';
    xhr.open('POST', `/v1/files?name=${enc(name)}${priv ? '&private=true' : ''}`);
    xhr.setRequestHeader('content-type', 'application/octet-stream');
    if (session) xhr.setRequestHeader('x-samizdat-session', session);
    xhr.upload.addEventListener('progress', (e) => {
      if (e.lengthComputable) onProgress(e.loaded / e.total);
    });
    xhr.addEventListener('load', () => {
      if (xhr.status === 401) { sessionExpired(); reject(new ApiError(401, 'session expired')); return; }
      setNodeDown(false);
      let j = null;
      try { j = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status >= 200 && xhr.status < 300 && j) resolve(j);
      else reject(new ApiError(xhr.status, (j && j.error) || `upload failed (${xhr.status})`));
    });
    xhr.addEventListener('error', () => { setNodeDown(true); reject(new ApiError(0, 'your node does not answer')); });
    xhr.send(file);
  });
}

/** Reads a text/event-stream body, calling `emit(event, data)` for each event. */
export async function readEvents(body, emit) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  let name = 'message';
  let data = [];
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    buf += value;
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl).replace(/\r$/, '');
      buf = buf.slice(nl + 1);
      if (line === '') {
        if (data.length) emit(name, data.join('\n'));
        name = 'message';
        data = [];
      } else if (line.startsWith('event:')) {
        name = line.slice(6).trim();
      } else if (line.startsWith('data:')) {
        data.push(line.slice(5).replace(/^ /, ''));
      }
      // Comments (keep-alives) and other fields are ignored.
    }
    if (buf.length > (4 << 20)) throw new Error('event too large');
  }
}

// ---------------------------------------------------------------------------------------------
// Session and node liveness

export function sessionExpired(message) {
  if (S.expired) return;
  S.expired = true;
  if (S.es) S.es.close();
  session = null;
  try { sessionStorage.removeItem(SESSION_KEY); } catch { /* storage disabled */ }
  if (message) {
    $('expired-title').textContent = 'Not logged in';
    $('expired-text').textContent = message;
  }
  for (const d of document.querySelectorAll('dialog[open]')) d.close();
  $('app').hidden = true;
  $('boot').hidden = true;
  $('expired').hidden = false;
  document.title = 'Samizdat — session expired';
}

let probeTimer = 0;
export function setNodeDown(down) {
  if (down === S.nodeDown) return;
  S.nodeDown = down;
  $('offline').hidden = !down;
  clearInterval(probeTimer);
  if (down) {
    probeTimer = setInterval(() => { api('/v1/node').catch(() => {}); }, 3000);
  } else {
    retryFailed(true);
  }
}
