// The web UI in two real browsers (headless Chromium driven by playwright-core), one per node.
// Run by tests/tests/ui.rs as `node tests/ui/run.mjs` with:
//   UI_A, UI_B      one-time login URLs (http://127.0.0.1:PORT/ui/login?token=...)
//   PEER_A, PEER_B  the nodes' peer ids
//   CHROMIUM        path of the browser (default /usr/bin/chromium)
//   SHOTS           directory for screenshots
//   IMAGE           a small PNG to attach
// Prints one line per step passed; exits non-zero on the first failure.

import http from 'node:http';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const WAIT = 30_000;
const OVERALL = 5 * 60_000;

function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`environment variable ${name} is not set`);
  return v;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it returns something truthy; fails after `timeout` saying what it waited for. */
async function until(what, fn, timeout = WAIT) {
  const t0 = Date.now();
  let last = null;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      last = null;
    } catch (e) {
      last = e;
    }
    if (Date.now() - t0 > timeout) {
      throw new Error(`timed out after ${Math.round(timeout / 1000)} s waiting for ${what}${last ? ` (last error: ${last.message.split('\n')[0]})` : ''}`);
    }
    await sleep(200);
  }
}

function check(cond, msg) {
  if (!cond) throw new Error(msg);
}

let stepNo = 0;
let passed = 0;
async function step(name, fn) {
  stepNo++;
  const t0 = Date.now();
  let note;
  try {
    note = await fn();
  } catch (e) {
    e.message = `step ${stepNo} (${name}) failed: ${e.message}`;
    throw e;
  }
  passed++;
  console.log(`ok ${stepNo} - ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)${note ? ` [${note}]` : ''}`);
}

// ---------------------------------------------------------------------------------------------

const cleanups = [];
async function cleanup() {
  while (cleanups.length) {
    const fn = cleanups.pop();
    try { await fn(); } catch { /* best effort */ }
  }
}

/** Problems the pages reported: uncaught exceptions and Content-Security-Policy violations. */
const pageProblems = [];
function watch(page, who) {
  page.on('pageerror', (e) => pageProblems.push(`${who}: uncaught ${e.message}`));
  page.on('console', (m) => {
    const t = m.text();
    if (m.type() === 'error' && /Content Security Policy|Refused to (execute|load|apply)/i.test(t)) {
      pageProblems.push(`${who}: ${t}`);
    }
  });
}

/**
 * Every request each browser context makes (and every WebSocket it opens), to check at the end
 * that the UI talks to its own node and nothing else. Pages the test itself opens on another
 * origin (the cross-origin attacker) are left out.
 */
const requests = [];
const foreignPages = new WeakSet();
function audit(context, who, origins) {
  const note = (url, page, how) => {
    if (page && foreignPages.has(page)) return;
    requests.push({ who, url, how, origins });
  };
  context.on('request', (req) => {
    let page = null;
    try { page = req.frame().page(); } catch { /* a worker's request: no frame */ }
    note(req.url(), page, req.method());
  });
  context.on('page', (page) => page.on('websocket', (ws) => note(ws.url(), page, 'WebSocket')));
}

function offOrigin(r) {
  if (/^(blob|data):/.test(r.url)) return false;
  let origin;
  try { origin = new URL(r.url).origin; } catch { return true; }
  return !r.origins.includes(origin);
}

/** A peer id no node has: the identity multihash of a fresh Ed25519 key, in base58btc. */
function ghostPeerId() {
  const { publicKey } = crypto.generateKeyPairSync('ed25519');
  const raw = publicKey.export({ format: 'der', type: 'spki' }).subarray(-32);
  const bytes = Buffer.concat([Buffer.from([0x00, 0x24, 0x08, 0x01, 0x12, 0x20]), raw]);
  const ALPHA = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';
  let n = BigInt(`0x${bytes.toString('hex')}`);
  let out = '';
  while (n > 0n) { out = ALPHA[Number(n % 58n)] + out; n /= 58n; }
  for (const b of bytes) { if (b !== 0) break; out = `1${out}`; }
  return out;
}

function shot(page, dir, name) {
  return page.screenshot({ path: path.join(dir, name), fullPage: false });
}

/**
 * A web server on another port of the same host, as a local app or dev server the user once
 * visited: it records every header the browser sends it (a cookie of the node's would be among
 * them) and what its page can read of the browser's storage, then tries the node's API with a
 * stolen session id.
 */
function startCapturingServer(target, stolen) {
  const captured = { cookies: [], storage: null, browserTry: null };
  const html = `<!doctype html><meta charset=utf-8><title>local app</title><p>a local app</p>
<script>
(async () => {
  const out = { cookie: document.cookie, session: Object.keys(sessionStorage), local: Object.keys(localStorage) };
  try {
    const r = await fetch(${JSON.stringify(target)}, { headers: { 'x-samizdat-session': ${JSON.stringify(stolen)} } });
    out.browserTry = 'status ' + r.status;
  } catch (e) {
    out.browserTry = 'blocked: ' + e.message;
  }
  await fetch('/report', { method: 'POST', body: JSON.stringify(out) });
})();
</script>`;
  const server = http.createServer((req, res) => {
    if (req.headers.cookie) captured.cookies.push(req.headers.cookie);
    if (req.url === '/report') {
      let body = '';
      req.on('data', (c) => { body += c; });
      req.on('end', () => { try { Object.assign(captured, { storage: JSON.parse(body) }); } catch { /* ignore */ } res.end('ok'); });
      return;
    }
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(html);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve({ server, captured }));
  });
}

/** A request to the node from outside any browser (curl-like), with the given headers. */
function rawRequest(url, { method = 'GET', headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers }, (res) => {
      let data = '';
      res.on('data', (c) => { data += c; });
      res.on('end', () => resolve({ status: res.statusCode, body: data }));
    });
    req.on('error', reject);
    if (body) req.write(body);
    req.end();
  });
}

/** A tiny web server on another port: a page of another origin that tries to drive the node. */
function startCrossOriginServer(target) {
  const html = `<!doctype html><meta charset=utf-8><title>elsewhere</title><p>another site</p>
<script>
(async () => {
  const target = ${JSON.stringify(target)};
  const out = {};
  async function attempt(name, opts) {
    try {
      const r = await fetch(target, opts);
      out[name] = r.type === 'opaque' ? 'opaque' : 'status ' + r.status;
    } catch (e) {
      out[name] = 'blocked: ' + e.message;
    }
  }
  await attempt('json', { method: 'POST', credentials: 'include',
    headers: { 'content-type': 'application/json' }, body: '{"name":"x"}' });
  await attempt('no-cors', { method: 'POST', mode: 'no-cors', credentials: 'include',
    headers: { 'content-type': 'text/plain' }, body: '{"name":"x"}' });
  window.result = out;
})();
</script>`;
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(html);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

async function crossOriginAttempt(context, origin) {
  const server = await startCrossOriginServer(`${origin}/v1/channels`);
  cleanups.push(() => new Promise((r) => server.close(r)));
  const page = await context.newPage();
  foreignPages.add(page);
  try {
    await page.goto(`http://127.0.0.1:${server.address().port}/`);
    const result = await until('the cross-origin page to finish its requests',
      () => page.evaluate(() => window.result));
    check(!/^status 2/.test(result.json),
      `a cross-origin POST /v1/channels was accepted: ${JSON.stringify(result)}`);
    return result;
  } finally {
    await page.close();
  }
}

/** The session id a logged-in page keeps (in its sessionStorage). */
function pageSession(page) {
  return page.evaluate(() => sessionStorage.getItem('samizdat:session'));
}

/** GET from inside a logged-in page (same origin, with the page's session header). */
function pageGet(page, url) {
  return page.evaluate(async (u) => {
    const r = await fetch(u, { headers: { 'x-samizdat-session': sessionStorage.getItem('samizdat:session') || '' } });
    return { status: r.status, body: await r.json().catch(() => null) };
  }, url);
}

async function login(context, url, who) {
  const page = await context.newPage();
  watch(page, who);
  const origin = new URL(url).origin;
  const res = await page.goto(url);
  check(res && res.ok(), `the login link answered ${res && res.status()}`);
  await page.getByTestId('new-channel').waitFor({ state: 'visible', timeout: WAIT });
  // The token left the address bar, and the session is not a cookie.
  check(page.url() === `${origin}/`, `login did not land on ${origin}/ but on ${page.url()}`);
  const cookies = await context.cookies();
  check(cookies.length === 0, `the login set cookies: ${JSON.stringify(cookies)}`);
  check(await pageSession(page), 'the logged-in page keeps no session');
  return page;
}

function convItem(page, kind, id) {
  return page.locator(`[data-testid=conv][data-kind=${kind}]${id ? `[data-id="${id}"]` : ''}`);
}

async function messageVisible(page, text) {
  return page.locator('[data-testid=message] [data-testid=message-text]', { hasText: text })
    .first().isVisible();
}

async function previewLoaded(page) {
  return page.evaluate(() => [...document.querySelectorAll('img[data-testid=preview]')]
    .some((i) => i.complete && i.naturalWidth > 0));
}

// ---------------------------------------------------------------------------------------------

async function main() {
  const UI_A = need('UI_A');
  const UI_B = need('UI_B');
  const PEER_A = need('PEER_A');
  const PEER_B = need('PEER_B');
  const IMAGE = need('IMAGE');
  const SHOTS = process.env.SHOTS || 'ui-screenshots';
  const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
  check(fs.existsSync(CHROMIUM), `no browser at ${CHROMIUM}`);
  check(fs.existsSync(IMAGE), `no image at ${IMAGE}`);
  fs.mkdirSync(SHOTS, { recursive: true });
  const originA = new URL(UI_A).origin;
  const originB = new URL(UI_B).origin;

  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  cleanups.push(() => browser.close());
  const desktop = { viewport: { width: 1280, height: 800 }, deviceScaleFactor: 1 };

  await step('before login: the UI and the API refuse a browser without a session', async () => {
    const ctx = await browser.newContext(desktop);
    cleanups.push(() => ctx.close());
    audit(ctx, 'the browser without a session', [originA, originB]);
    const page = await ctx.newPage();
    watch(page, 'fresh');
    for (const origin of [originA, originB]) {
      // The page itself is the same code for everyone; without a session it shows nothing of
      // the node and says how to log in.
      await page.goto(`${origin}/`);
      await until(`the "not logged in" notice on ${origin}/`, () => page.locator('#expired').isVisible());
      const text = (await page.locator('body').textContent()) || '';
      check(text.includes('Not logged in') && !text.includes(PEER_A) && !text.includes(PEER_B),
        `${origin}/ without a session shows: ${text.slice(0, 300)}`);
      const api = await page.goto(`${origin}/v1/node`);
      check(api.status() === 401, `GET ${origin}/v1/node without a session answered ${api.status()}, not 401`);
      const body = await api.text();
      check(!body.includes('peer_id'), `GET /v1/node without a session gave node info: ${body.slice(0, 200)}`);
    }
    const wrong = new URL(UI_A);
    wrong.searchParams.set('token', '0'.repeat(64));
    const res = await page.goto(wrong.href);
    check(res.status() === 401, `a login link with a wrong token answered ${res.status()}, not 401`);
    // A login token in the fragment, wrong: the page says so and holds no session.
    await page.goto(`${originA}/#login=${'0'.repeat(64)}`);
    await until('the refused login notice', () => page.locator('#expired').isVisible());
    check(!(await pageSession(page)), 'a wrong login token left a session in the page');
    const cookies = await ctx.cookies();
    check(cookies.length === 0, `a wrong login set cookies: ${JSON.stringify(cookies)}`);
    await shot(page, SHOTS, 'a-login-refused.png');
    // Another origin, no session yet: refused as well.
    const r = await crossOriginAttempt(ctx, originA);
    return `cross-origin without session: ${r.json}`;
  });

  const ctxA = await browser.newContext(desktop);
  cleanups.push(() => ctxA.close());
  audit(ctxA, 'A', [originA]);
  const ctxB = await browser.newContext(desktop);
  cleanups.push(() => ctxB.close());
  audit(ctxB, 'B', [originB]);
  let pageA, pageB, invite;

  await step('A logs in and creates the channel "news"', async () => {
    pageA = await login(ctxA, UI_A, 'A');
    // Logged in, a page of another origin still cannot drive A's node with A's session.
    const result = await crossOriginAttempt(ctxA, originA);
    const list = await pageGet(pageA, '/v1/channels');
    check(list.status === 200, `GET /v1/channels from A's page answered ${list.status}`);
    check(!list.body.some((c) => c.name === 'x'),
      `a cross-origin request created a channel (${JSON.stringify(result)})`);
    await pageA.getByTestId('new-channel').click();
    await pageA.getByTestId('channel-name').fill('news');
    await pageA.getByTestId('channel-create').click();
    await until('the channel "news" in A\'s sidebar',
      () => convItem(pageA, 'channel').filter({ hasText: 'news' }).first().isVisible());
    invite = await until('an invite link in A\'s channel view', async () => {
      const t = (await pageA.getByTestId('invite-link').textContent()) || '';
      return t.startsWith('samizdat://channel/') ? t.trim() : null;
    });
    return `cross-origin with A's session: ${result.json}; no-cors: ${result['no-cors']}; no channel "x"`;
  });

  await step('a credential captured on another port of the host is refused', async () => {
    const stolen = await pageSession(pageA);
    const { server, captured } = await startCapturingServer(`${originA}/v1/dm`, stolen);
    cleanups.push(() => new Promise((r) => server.close(r)));
    const page = await ctxA.newPage();
    foreignPages.add(page);
    await page.goto(`http://127.0.0.1:${server.address().port}/`);
    await until('the local app to report what it could read', () => captured.storage);
    await page.close();
    // The browser handed the other port nothing of A's session.
    check(captured.cookies.length === 0, `the browser sent the other port cookies: ${captured.cookies.join(' | ')}`);
    check(!captured.storage.cookie && captured.storage.session.length === 0,
      `the other port's page could read: ${JSON.stringify(captured.storage)}`);
    check(!/^status 2/.test(captured.storage.browserTry),
      `the other port's page used A's session: ${captured.storage.browserTry}`);
    // Even the real session id, replayed the way a local server would (no browser), is refused.
    const attempts = {
      'header, no Sec-Fetch-Site': { 'x-samizdat-session': stolen },
      'header, Sec-Fetch-Site same-site': { 'x-samizdat-session': stolen, 'sec-fetch-site': 'same-site' },
      'as a cookie': { cookie: `samizdat_session_${new URL(originA).port}=${stolen}`, 'sec-fetch-site': 'same-origin' },
    };
    const seen = [];
    for (const [how, headers] of Object.entries(attempts)) {
      const get = await rawRequest(`${originA}/v1/dm`, { headers });
      const post = await rawRequest(`${originA}/v1/channels`, {
        method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: '{"name":"stolen"}',
      });
      check(get.status === 401 && post.status === 401,
        `a replay (${how}) answered GET /v1/dm ${get.status}, POST /v1/channels ${post.status}`);
      seen.push(`${how}: ${get.status}/${post.status}`);
    }
    // The page that owns it still works.
    const ok = await pageGet(pageA, '/v1/dm');
    check(ok.status === 200, `A's own page was refused after the replays: ${ok.status}`);
    return `browser on the other port: ${captured.storage.browserTry}; replays ${seen.join('; ')}`;
  });

  await step('B logs in and follows the invite link', async () => {
    pageB = await login(ctxB, UI_B, 'B');
    await pageB.getByTestId('new-channel').click();
    await pageB.getByTestId('follow-link').fill(invite);
    await pageB.getByTestId('follow-submit').click();
    await until('the channel "news" in B\'s sidebar',
      () => convItem(pageB, 'channel').filter({ hasText: 'news' }).first().isVisible());
    // B is looking at it.
    await until('B to show the channel', async () => (await pageB.locator('#conv-title').textContent()) === 'news');
  });

  await step('A posts "hello from A"; B sees it without reloading', async () => {
    await pageB.evaluate(() => { window.__notReloaded = true; });
    const composer = pageA.getByTestId('composer');
    await composer.fill('hello from A');
    await composer.press('Enter');
    await until('A\'s own post to show', () => messageVisible(pageA, 'hello from A'));
    await until('A\'s post to be accepted by A\'s node (no longer "sending…")', () =>
      pageA.locator('[data-testid=message].pending').count().then((n) => n === 0));
    await until('"hello from A" on B\'s page', () => messageVisible(pageB, 'hello from A'));
    check(await pageB.evaluate(() => window.__notReloaded === true), 'B\'s page was reloaded');
  });

  await step('A attaches an image; B sees its preview', async () => {
    await pageA.getByTestId('attach').setInputFiles(IMAGE);
    await pageA.getByTestId('composer').fill('a picture');
    await pageA.getByTestId('send').click();
    await until('the picture to be posted on A', async () =>
      (await messageVisible(pageA, 'a picture'))
      && (await pageA.locator('[data-testid=message].pending, [data-testid=message].failed').count()) === 0);
    await until('an image preview (naturalWidth > 0) on B\'s page', () => previewLoaded(pageB));
    await until('an image preview on A\'s page', () => previewLoaded(pageA));
    await shot(pageA, SHOTS, 'a-channel.png');
    await shot(pageB, SHOTS, 'b-channel-with-image.png');
    // The preview follows the type the post carries (the name's extension is only a fallback).
    const chId = await convItem(pageB, 'channel').first().getAttribute('data-id');
    const posts = await pageGet(pageB, `/v1/channels/${encodeURIComponent(chId)}/posts?last=5`);
    const withFile = (posts.body?.posts || []).find((x) => x.file);
    check(withFile && withFile.file.mime === 'image/png',
      `the post's file carries no type "image/png": ${JSON.stringify(withFile && withFile.file)}`);
    // A file the node does not know: 404, which the UI reads as "not here (yet)".
    const unknown = await pageGet(pageA, `/v1/files/${'a'.repeat(52)}`);
    check(unknown.status === 404, `GET /v1/files/{unknown cid} answered ${unknown.status}, not 404`);
    return `post file type ${withFile.file.mime}; unknown file → ${unknown.status}`;
  });

  await step('B, a stranger, writes to A: a message request A accepts', async () => {
    await pageB.getByTestId('new-dm').click();
    await pageB.getByTestId('new-dm-peer').fill(PEER_A);
    await pageB.getByTestId('new-dm-submit').click();
    const composer = pageB.getByTestId('composer');
    await composer.waitFor({ state: 'visible', timeout: WAIT });
    await composer.fill('hi A');
    await composer.press('Enter');
    await until('"hi A" on B\'s page', () => messageVisible(pageB, 'hi A'));
    const requests = pageA.getByTestId('requests');
    await until('a message request on A', async () =>
      (await requests.isVisible()) && ((await pageA.getByTestId('requests-count').textContent()) || '').trim() === '1');
    // Not a conversation yet, and nothing announced.
    check(await convItem(pageA, 'dm', PEER_B).count() === 0, 'the stranger\'s message is already a conversation on A');
    check(!/^\(\d+\)/.test(await pageA.title()), `A's title announces the request: ${await pageA.title()}`);
    await requests.click();
    const req = pageA.locator(`[data-testid=request][data-peer="${PEER_B}"]`);
    await until('B\'s request with its preview', async () => ((await req.textContent()) || '').includes('hi A'));
    await shot(pageA, SHOTS, 'a-requests.png');
    await req.getByTestId('request-accept').click();
    await until('the conversation to open on A with "hi A"', () => messageVisible(pageA, 'hi A'));
    await until('the request to go', async () => !(await requests.isVisible()));
    const list = await pageGet(pageA, '/v1/requests');
    check(list.status === 200 && list.body.length === 0, `requests left after accepting: ${JSON.stringify(list.body)}`);
  });

  await step('B writes again; A sees an unread badge, opens the conversation, the badge goes', async () => {
    // A looks elsewhere.
    await convItem(pageA, 'channel').filter({ hasText: 'news' }).first().click();
    const composer = pageB.getByTestId('composer');
    await composer.fill('are you there?');
    await composer.press('Enter');
    await until('"are you there?" on B\'s page', () => messageVisible(pageB, 'are you there?'));
    const item = convItem(pageA, 'dm', PEER_B);
    const badge = item.getByTestId('unread');
    await until('an unread badge "1" on A\'s conversation with B', async () =>
      (await badge.isVisible()) && (await badge.textContent()).trim() === '1');
    await shot(pageA, SHOTS, 'a-dm-unread.png');
    await item.click();
    await until('"are you there?" on A\'s page', () => messageVisible(pageA, 'are you there?'));
    await until('the badge to go', async () => !(await badge.isVisible()));
    await until('B\'s message to show as delivered on B', async () =>
      (await pageB.locator('[data-testid=message].mine .status').last().textContent()) === '✓✓');
    await shot(pageA, SHOTS, 'a-dm.png');
  });

  await step('contact card, network status, and the phone layout', async () => {
    await pageA.locator('#btn-contacts').click();
    const card = pageA.getByTestId('contact-card');
    await card.waitFor({ state: 'visible', timeout: WAIT });
    const link = await until('A\'s contact card link', async () => {
      const t = ((await card.getByTestId('card-link').textContent()) || '').trim();
      return t.startsWith('samizdat://contact/') ? t : null;
    });
    await until('the QR code image', () => card.getByTestId('card-qr')
      .evaluate((i) => i.complete && i.naturalWidth > 0));
    await shot(pageA, SHOTS, 'a-contact-card.png');

    await pageA.locator('#btn-network').click();
    const net = pageA.getByTestId('net-status');
    await net.waitFor({ state: 'visible', timeout: WAIT });
    await until('the network panel to list B as a connected peer', async () =>
      (await net.textContent()).includes('peers connected')
      && (await net.locator('table.peers td[title]').evaluateAll((tds, b) => tds.some((t) => t.title === b), PEER_B)));
    await shot(pageA, SHOTS, 'a-network.png');

    // B adds A from the card's link; the conversation then carries A's name.
    await pageB.locator('#btn-contacts').click();
    await pageB.getByTestId('add-contact-link').fill(link);
    await pageB.locator('#add-contact-name').fill('Ana');
    await pageB.getByTestId('add-contact-submit').click();
    await until('A in B\'s contact list', () => pageB.locator('#contact-list').getByText('Ana').isVisible());
    await until('B\'s conversation with A to be named Ana', async () =>
      ((await convItem(pageB, 'dm', PEER_A).textContent()) || '').includes('Ana'));

    await pageB.setViewportSize({ width: 390, height: 844 });
    // On a phone the contacts panel covers the list: back first.
    await pageB.locator('#panel-contacts [data-back]').click();
    await convItem(pageB, 'channel').filter({ hasText: 'news' }).first().click();
    await until('the channel to fill the phone screen', async () =>
      (await pageB.locator('#conv-back').isVisible()) && previewLoaded(pageB));
    await pageB.waitForTimeout(300); // the slide-in transition
    await shot(pageB, SHOTS, 'b-phone.png');
    await pageB.locator('#conv-back').click();
    await until('the conversation list on the phone after "back"', () =>
      convItem(pageB, 'channel').first().isVisible());
  });

  await step('the Devices page lists this device and makes a one-time link with its QR code', async () => {
    await pageA.locator('#btn-devices').click();
    const rows = pageA.getByTestId('device');
    await until('A\'s own device listed', async () => (await rows.count()) === 1
      && ((await rows.first().textContent()) || '').includes('(this device)')
      && ((await rows.first().textContent()) || '').includes(PEER_A));
    check(await rows.first().locator('button').count() === 0, 'this device offers to revoke itself');
    await pageA.locator('#device-new-link').click();
    await until('the device link', async () =>
      ((await pageA.locator('#device-link').textContent()) || '').trim().startsWith('samizdat://device/'));
    await until('the device link\'s QR code image', () => pageA.locator('#device-qr')
      .evaluate((i) => i.complete && i.naturalWidth > 0));
    await shot(pageA, SHOTS, 'a-devices.png');
  });

  await step('keyboard only: B opens the conversation with A from the sidebar and writes to A', async () => {
    // A looks at the conversation with B (with the mouse: only B is keyboard-only).
    await convItem(pageA, 'dm', PEER_B).click();
    await pageB.setViewportSize({ width: 1280, height: 800 });
    await convItem(pageB, 'dm', PEER_A).waitFor({ state: 'visible', timeout: WAIT });
    // From wherever the focus is, Tab (or Shift+Tab) through the page to the conversation.
    const where = () => pageB.evaluate((peer) => {
      const a = document.activeElement;
      if (!a || a === document.body) return { hit: false, what: 'body' };
      const what = a.dataset.testid ? `${a.dataset.testid}${a.dataset.kind ? `:${a.dataset.kind}` : ''}`
        : a.id ? `#${a.id}` : `${a.tagName.toLowerCase()}:${(a.getAttribute('aria-label') || a.textContent || '').trim().slice(0, 16)}`;
      return { hit: a.matches(`[data-testid=conv][data-kind=dm][data-id="${peer}"]`), what };
    }, PEER_A);
    const trail = [];
    let at = null;
    for (const key of ['Tab', 'Shift+Tab']) {
      for (let i = 0; i < 40; i++) {
        await pageB.keyboard.press(key);
        at = await where();
        trail.push(at.what);
        if (at.hit) break;
      }
      if (at.hit) break;
    }
    check(at.hit, `Tab and Shift+Tab never reached the conversation with A; the focus went ${trail.join(' → ')}`);
    const ring = await pageB.evaluate(() => {
      const a = document.activeElement;
      const st = getComputedStyle(a);
      return { visible: a.matches(':focus-visible'), style: st.outlineStyle, width: parseFloat(st.outlineWidth) || 0 };
    });
    check(ring.visible && ring.style !== 'none' && ring.width >= 1,
      `the focused conversation shows no focus ring: ${JSON.stringify(ring)}`);
    await shot(pageB, SHOTS, 'b-keyboard-focus.png');
    await pageB.keyboard.press('Enter');
    await until('the conversation with A to open on B with the focus in the message field', () =>
      pageB.evaluate((peer) => decodeURIComponent(location.hash).endsWith(`/dm/${peer}`)
        && document.activeElement?.dataset.testid === 'composer', PEER_A));
    await pageB.keyboard.type('typed with keys only');
    await pageB.keyboard.press('Enter');
    await until('"typed with keys only" on B\'s page', () => messageVisible(pageB, 'typed with keys only'));
    await until('"typed with keys only" on A\'s page', () => messageVisible(pageA, 'typed with keys only'));
    return `${trail.length} key presses: ${trail.join(' → ')}`;
  });

  await step('a send that fails shows as not sent, then goes out by itself once the node answers', async () => {
    const text = 'sent while the API was unreachable';
    // Only A's sends fail: everything else (events, reads) still works.
    const refuse = (route) => (route.request().method() === 'POST'
      ? route.abort('connectionrefused') : route.continue());
    await pageA.route('**/v1/dm/**', refuse);
    try {
      const composer = pageA.getByTestId('composer');
      await composer.fill(text);
      await composer.press('Enter');
      const failed = pageA.locator('[data-testid=message].failed', { hasText: text });
      await until('the message to show as not sent, with a retry button', async () =>
        (await failed.getByTestId('send-failed').isVisible()) && (await failed.getByTestId('retry').isVisible()));
      await shot(pageA, SHOTS, 'a-send-failed.png');
      check(!(await messageVisible(pageB, text)), 'B got a message A\'s browser could not send');
    } finally {
      await pageA.unroute('**/v1/dm/**', refuse);
    }
    await until('the message to be retried and accepted on A (not "not sent", not "sending…")', async () =>
      (await messageVisible(pageA, text))
      && (await pageA.locator('[data-testid=message].pending, [data-testid=message].failed').count()) === 0);
    await until(`"${text}" on B's page`, () => messageVisible(pageB, text));
    await until('it to show as delivered on A', async () =>
      (await pageA.locator('[data-testid=message].mine', { hasText: text }).locator('.status').textContent()) === '✓✓');
    const copies = await pageB.locator('[data-testid=message]', { hasText: text }).count();
    check(copies === 1, `B shows the retried message ${copies} times`);
  });

  await step('a disappearing message (30 s timer) counts down in both browsers', async () => {
    const text = 'this one disappears';
    await pageA.locator('#timer').selectOption('30000');
    const composer = pageA.getByTestId('composer');
    await composer.fill(text);
    await composer.press('Enter');
    const left = async (page) => {
      const t = page.locator('[data-testid=message]', { hasText: text }).getByTestId('timer');
      if (!(await t.isVisible())) return null;
      const m = /disappears in (\d+)s/.exec((await t.textContent()) || '');
      return m ? Number(m[1]) : null;
    };
    const a0 = await until('a countdown on A\'s copy', async () => { const s = await left(pageA); return s && s <= 30 ? s : null; });
    const b0 = await until('a countdown on B\'s copy', async () => { const s = await left(pageB); return s && s <= 30 ? s : null; });
    await until('B\'s countdown to go down', async () => { const s = await left(pageB); return s !== null && s < b0; }, 5000);
    await until('A\'s countdown to go down', async () => { const s = await left(pageA); return s !== null && s < a0; }, 5000);
    await shot(pageB, SHOTS, 'b-disappearing.png');
    // The timer is remembered per conversation: back to off for what follows.
    await pageA.locator('#timer').selectOption('0');
    return `${a0} s left on A, ${b0} s on B`;
  });

  await step('a pending group invitation is kept by A\'s node, listed after a reload, and withdrawn', async () => {
    const ghost = ghostPeerId();
    await pageA.locator('#btn-new-group').click();
    await pageA.locator('#group-name').fill('book club');
    await pageA.locator('#create-group-form [type=submit]').click();
    const dlg = pageA.locator('#dlg-members');
    await dlg.getByTestId('invite-peer').waitFor({ state: 'visible', timeout: WAIT });
    await dlg.getByTestId('invite-peer').fill(ghost);
    await dlg.getByTestId('invite-submit').click();
    await until('the invitation to show as pending', () =>
      dlg.locator(`[data-testid=invitations] [data-peer="${ghost}"]`).isVisible());
    const gid = await until('the group in GET /v1/groups with the invitation', async () => {
      const r = await pageGet(pageA, '/v1/groups');
      const g = r.body.find((x) => x.name === 'book club');
      return g && (g.invited || []).includes(ghost) ? g.id : null;
    });
    // A new page knows nothing of the last one: what it lists comes from the node.
    await pageA.reload();
    await pageA.getByTestId('new-channel').waitFor({ state: 'visible', timeout: WAIT });
    await convItem(pageA, 'group', gid).click();
    await pageA.locator('#conv-actions button', { hasText: 'Members' }).click();
    const row = dlg.locator(`[data-testid=invitations] [data-peer="${ghost}"]`);
    await until('the pending invitation in the members dialog after the reload', () => row.isVisible());
    check(await until('the group header to count it', async () =>
      ((await pageA.locator('#conv-sub').textContent()) || '').includes('1 invited')), 'no "1 invited" in the header');
    await shot(pageA, SHOTS, 'a-group-invited.png');
    await row.getByTestId('withdraw').click();
    await until('the invitation to go from the dialog', async () => !(await row.isVisible()));
    const r = await pageGet(pageA, '/v1/groups');
    const g = r.body.find((x) => x.id === gid);
    check(g && (g.invited || []).length === 0, `the node still lists invitations: ${JSON.stringify(g && g.invited)}`);
    await pageA.keyboard.press('Escape');
  });

  await step('audit: the browsers asked nothing of anyone but their own node', async () => {
    const bad = requests.filter(offOrigin);
    check(bad.length === 0, `requests to another origin:\n  ${bad.slice(0, 20)
      .map((r) => `${r.who}: ${r.how} ${r.url}`).join('\n  ')}`);
    const count = (who) => requests.filter((r) => r.who === who).length;
    return `${count('A')} requests from A, ${count('B')} from B, ${count('the browser without a session')} without a session; all to the node's own origin`;
  });

  check(pageProblems.length === 0, `the pages reported problems:\n  ${pageProblems.join('\n  ')}`);
  console.log(`${passed} passed, 0 failed`);
}

const watchdog = setTimeout(async () => {
  console.error(`the browser test did not finish within ${OVERALL / 1000} s`);
  await cleanup();
  process.exit(1);
}, OVERALL);

try {
  await main();
} catch (e) {
  console.error(e.message);
  if (pageProblems.length) console.error(`the pages reported:\n  ${pageProblems.join('\n  ')}`);
  console.log(`${passed} passed, 1 failed`);
  process.exitCode = 1;
} finally {
  clearTimeout(watchdog);
  await cleanup();
}
