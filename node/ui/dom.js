// DOM helpers: element lookup and creation, avatars, the toast, the clipboard.

import { shortId } from './format.js';

export const $ = (id) => document.getElementById(id);
export const enc = encodeURIComponent;

/** Creates an element: h('div', {class: 'x', onclick: fn}, child, 'text', ...). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v == null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (v === true) el.setAttribute(k, '');
      else el.setAttribute(k, String(v));
    }
  }
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

/** Makes `parent`'s children exactly `nodes`, in order, moving as few as it can. */
export function reconcile(parent, nodes) {
  const want = new Set(nodes);
  for (const c of [...parent.children]) if (!want.has(c)) c.remove();
  let ref = parent.firstChild;
  for (const n of nodes) {
    if (n === ref) { ref = ref.nextSibling; continue; }
    parent.insertBefore(n, ref);
  }
}

export function hue(id) {
  let x = 0;
  for (let i = 0; i < id.length; i++) x = (x * 31 + id.charCodeAt(i)) >>> 0;
  return x % 360;
}

export function setAvatar(el, id, label) {
  let t = (label || '?').trim();
  // An unnamed peer shows as "12D3…abcdef": every one would start with "1".
  if (t.includes('…') && id && t === shortId(id)) t = id.slice(-2);
  const first = [...t.replace(/^[^\p{L}\p{N}]+/u, '')][0] || [...t][0] || '?';
  el.textContent = first.toUpperCase();
  el.style.setProperty('--hue', String(hue(id || t)));
}

let toastTimer = 0;
export function toast(msg, { error = false } = {}) {
  const t = $('toast');
  t.textContent = msg;
  t.classList.toggle('error', error);
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.hidden = true; }, error ? 6000 : 2500);
}

export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    const ta = h('textarea', { class: 'visually-hidden' });
    ta.value = text;
    document.body.append(ta);
    ta.select();
    document.execCommand('copy');
    ta.remove();
  }
  toast('Copied');
}

export function avatarEl(id, label, round) {
  const a = h('span', { class: `avatar small${round ? ' round' : ''}`, 'aria-hidden': 'true' });
  setAvatar(a, id, label);
  return a;
}
