// Formatting and classification helpers: sizes, times, days, peer ids, media types.

const MEDIA_TYPES = new Set([
  'image/png', 'image/jpeg', 'image/gif', 'image/webp', 'image/avif', 'image/bmp',
  'video/mp4', 'video/webm', 'video/ogg', 'audio/mpeg', 'audio/ogg', 'audio/mp4',
  'audio/wav', 'audio/webm', 'audio/flac',
]);
const EXT_MIME = {
  png: 'image/png', jpg: 'image/jpeg', jpeg: 'image/jpeg', gif: 'image/gif', webp: 'image/webp',
  avif: 'image/avif', bmp: 'image/bmp', mp4: 'video/mp4', m4v: 'video/mp4', webm: 'video/webm',
  ogv: 'video/ogg', mp3: 'audio/mpeg', ogg: 'audio/ogg', oga: 'audio/ogg', opus: 'audio/ogg',
  m4a: 'audio/mp4', wav: 'audio/wav', flac: 'audio/flac', pdf: 'application/pdf',
  txt: 'text/plain', zip: 'application/zip',
};

export function shortId(id) {
  if (!id) return '';
  return id.length > 14 ? `${id.slice(0, 4)}…${id.slice(-6)}` : id;
}

export function fmtSize(n) {
  if (n == null) return '';
  if (n < 1024) return `${n} B`;
  const u = ['KB', 'MB', 'GB', 'TB'];
  let i = -1;
  do { n /= 1024; i++; } while (n >= 1024 && i < u.length - 1);
  return `${n < 10 ? n.toFixed(1) : Math.round(n)} ${u[i]}`;
}

export function fmtLeft(ms) {
  const s = Math.max(0, Math.ceil(ms / 1000));
  const d = Math.floor(s / 86400), hh = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60), sec = s % 60;
  if (d) return hh ? `${d}d ${hh}h` : `${d}d`;
  if (hh) return m ? `${hh}h ${m}m` : `${hh}h`;
  if (m) return `${m}m ${sec}s`;
  return `${sec}s`;
}

export function fmtDuration(ms) {
  const opt = TIMERS.find((t) => t.ms === ms);
  return opt ? opt.long : fmtLeft(ms);
}
const TIMERS = [
  { ms: 30000, long: '30 seconds' }, { ms: 300000, long: '5 minutes' },
  { ms: 3600000, long: '1 hour' }, { ms: 86400000, long: '1 day' },
  { ms: 604800000, long: '1 week' },
];

function sameDay(a, b) {
  return a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth()
    && a.getDate() === b.getDate();
}

export function fmtTime(ts) {
  return new Date(ts).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

/** Short time for the sidebar: today → 14:03, this week → Tue, else 3 Mar. */
export function fmtWhen(ts) {
  if (!ts) return '';
  const d = new Date(ts), now = new Date();
  if (sameDay(d, now)) return fmtTime(ts);
  if (now - d < 6 * 86400000) return d.toLocaleDateString([], { weekday: 'short' });
  if (d.getFullYear() === now.getFullYear()) return d.toLocaleDateString([], { day: 'numeric', month: 'short' });
  return d.toLocaleDateString([], { day: 'numeric', month: 'short', year: 'numeric' });
}

export function dayKey(ts) {
  const d = new Date(ts);
  return `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`;
}

export function dayLabel(ts) {
  const d = new Date(ts), now = new Date();
  if (sameDay(d, now)) return 'Today';
  const y = new Date(now); y.setDate(now.getDate() - 1);
  if (sameDay(d, y)) return 'Yesterday';
  const opts = { weekday: 'long', day: 'numeric', month: 'long' };
  if (d.getFullYear() !== now.getFullYear()) opts.year = 'numeric';
  return d.toLocaleDateString([], opts);
}

export const PEER_RE = /^[1-9A-HJ-NP-Za-km-z]{46,60}$/;

export function guessMime(name) {
  const ext = (name || '').split('.').pop().toLowerCase();
  return EXT_MIME[ext] || '';
}

export function mediaKind(f) {
  const mime = f.mime || guessMime(f.name);
  if (!MEDIA_TYPES.has(mime)) return 'file';
  return mime.split('/')[0]; // image | video | audio
}

/** The type a downloaded blob gets: only media types render; anything else is opaque bytes. */
export function safeType(f) {
  const mime = f.mime || guessMime(f.name);
  return MEDIA_TYPES.has(mime) ? mime : 'application/octet-stream';
}

export function byteLen(s) { return new TextEncoder().encode(s).length; }
