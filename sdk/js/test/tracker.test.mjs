// Tests of shoplake.js in headless Chromium against a fake collector.
//
//   node --test sdk/js/test/        (browser: $CHROMIUM or /usr/bin/chromium)
//
// The fake collector serves the tracker at /sdk.js, the demo store at
// /demo/store and a few test pages, answers CORS preflights, and records
// every POST /v1/batch. How it answers is planned per write key, so each test
// uses its own. Pages are opened at http://localhost:PORT; tests that need a
// cross-origin collector send to http://127.0.0.1:PORT.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { DESKTOP_USER_AGENT, defaultChromium, runStoreFlow } from './store-flow.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SDK_PATH = path.join(ROOT, 'shoplake.js');
const STORE_PATH = path.join(ROOT, 'demo', 'store.html');
const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

// ---- the fake collector ----

const posts = []; // every POST /v1/batch: {writeKey, contentType, status, batch, at}
const plans = new Map(); // writeKey -> answers to give first, in order: {status, retryAfter}
const down = new Set(); // write keys answered 503 while in the set

const PAGES = {
  '/blank': '<!doctype html><html><head><title>Blank</title><script src="/sdk.js"></script></head><body>' +
    '<button id="signup" data-shoplake-click="Newsletter Signup" data-shoplake-list-id="footer" ' +
    'data-shoplake-placement="bottom"><span>Sign up</span></button></body></html>',
  '/elsewhere': '<!doctype html><html><head><title>Elsewhere</title></head><body>No tracker here.</body></html>',
  '/snippet': '<!doctype html><html><head><title>Snippet</title><script>' +
    'window.shoplake = window.shoplake || [];' +
    "shoplake.push(['track', 'Before Load', { early: true }], ['init', { writeKey: 'snippet', flushInterval: 100 }]);" +
    '</script><script async src="/sdk.js"></script></head><body></body></html>',
};

function answer(writeKey) {
  if (down.has(writeKey)) return { status: 503 };
  const plan = plans.get(writeKey);
  return (plan && plan.shift()) || { status: 200 };
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://collector');
  res.setHeader('Access-Control-Allow-Origin', '*');
  res.setHeader('Access-Control-Expose-Headers', 'Retry-After');
  if (req.method === 'OPTIONS') {
    res.writeHead(204, {
      'Access-Control-Allow-Methods': 'POST, OPTIONS',
      'Access-Control-Allow-Headers': 'Content-Type',
      'Access-Control-Max-Age': '600',
    });
    return res.end();
  }
  if (req.method === 'GET' && url.pathname === '/sdk.js') {
    res.writeHead(200, { 'Content-Type': 'text/javascript; charset=utf-8', 'Cache-Control': 'no-cache' });
    return res.end(fs.readFileSync(SDK_PATH));
  }
  if (req.method === 'GET' && (url.pathname === '/demo/store' || PAGES[url.pathname])) {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    return res.end(url.pathname === '/demo/store' ? fs.readFileSync(STORE_PATH) : PAGES[url.pathname]);
  }
  if (req.method === 'POST' && url.pathname === '/v1/batch') {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      let body;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        res.writeHead(400, { 'Content-Type': 'application/json' });
        return res.end('{"error":"invalid JSON"}');
      }
      const { status, retryAfter } = answer(body.writeKey);
      posts.push({ writeKey: body.writeKey, sentAt: body.sentAt, contentType: req.headers['content-type'],
        status, batch: body.batch, at: Date.now() });
      const headers = { 'Content-Type': 'application/json' };
      if (retryAfter) headers['Retry-After'] = retryAfter;
      res.writeHead(status, headers);
      res.end(status < 300 ? '{"ok":true}' : '{"error":"planned failure"}');
    });
    return;
  }
  res.writeHead(404);
  res.end();
});

const postsFor = (key) => posts.filter((p) => p.writeKey === key);
const accepted = (key) => postsFor(key).filter((p) => p.status < 300).flatMap((p) => p.batch);
const named = (msgs, event) => msgs.filter((m) => m.event === event);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, check, ms = 10000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = check();
    if (v) return v;
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

function countBy(list, key) {
  const n = new Map();
  for (const x of list) n.set(x[key], (n.get(x[key]) || 0) + 1);
  return n;
}

// ---- the browser ----

let browser;
let pageBase; // http://localhost:PORT
let otherOrigin; // http://127.0.0.1:PORT

before(async () => {
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  pageBase = `http://localhost:${port}`;
  otherOrigin = `http://127.0.0.1:${port}`;
  browser = await chromium.launch({ executablePath: defaultChromium(), headless: true });
});

after(async () => {
  if (browser) await browser.close();
  server.close();
});

// A page of a fresh browser context (its own localStorage) at /blank.
async function blankPage(t, contextOptions = {}) {
  const context = await browser.newContext({ userAgent: DESKTOP_USER_AGENT, ...contextOptions });
  t.after(() => context.close());
  const page = await context.newPage();
  await page.goto(`${pageBase}/blank`);
  return page;
}

const init = (page, options) => page.evaluate((o) => shoplake.init(o), options);
const storedQueue = (page) => page.evaluate(() => Object.keys(localStorage)
  .filter((k) => k.startsWith('shoplake_q_'))
  .flatMap((k) => JSON.parse(localStorage.getItem(k)).q.map((m) => m.messageId)));

// ---- tests ----

test('shoplake.js is under 5 KB gzipped', () => {
  const size = zlib.gzipSync(fs.readFileSync(SDK_PATH), { level: 9 }).length;
  assert.ok(size < 5120, `gzipped size ${size} bytes`);
});

test('the demo store flow sends page views and the e-commerce funnel', async () => {
  const result = await runStoreFlow({ baseUrl: pageBase, writeKey: 'store-flow' });
  const msgs = accepted('store-flow');

  assert.match(result.orderId, /^ORD-[0-9A-Z]+-[0-9A-Z]+$/);
  assert.equal(result.revenue, 134.89); // 84.99 + 2 × 24.95
  assert.deepEqual(result.productIds, ['P0003', 'P0008']);
  assert.deepEqual(result.events.map((e) => e.messageId), msgs.map((m) => m.messageId));

  for (const p of postsFor('store-flow')) {
    assert.equal(p.contentType, 'application/json');
    assert.match(p.sentAt, ISO);
  }
  const ids = msgs.map((m) => m.messageId);
  assert.equal(new Set(ids).size, ids.length, 'messageIds are unique');
  for (const m of msgs) {
    assert.match(m.messageId, UUID_V4);
    assert.match(m.timestamp, ISO);
    assert.equal(m.anonymousId, result.anonymousId);
    assert.equal(m.userId, undefined);
    assert.equal(m.context.sessionId, result.sessionId);
    assert.deepEqual(m.context.library, { name: 'shoplake.js', version: '0.1.0' });
    assert.equal(m.context.userAgent, DESKTOP_USER_AGENT);
    assert.equal(m.context.page.path, '/demo/store');
    assert.deepEqual(m.context.screen, { width: 1280, height: 800 });
    assert.ok(m.context.locale);
  }

  // Page views: the first load, then one per route change (pushState).
  const pages = msgs.filter((m) => m.type === 'page');
  const store = `${pageBase}/demo/store?key=store-flow`;
  assert.deepEqual(pages.map((m) => m.properties.url), [
    store, `${store}#/product/P0003`, `${store}#/`, `${store}#/search/bottle`, `${store}#/product/P0008`,
    `${store}#/cart`, `${store}#/checkout`, `${store}#/order/${result.orderId}`,
  ]);
  assert.equal(pages[0].properties.referrer, '');
  assert.equal(pages[1].properties.referrer, store);
  assert.equal(pages[1].properties.title, 'Stitchworks Classic Sneakers — Lakeside Goods');
  assert.equal(pages[1].properties.hash, '#/product/P0003');
  assert.equal(pages[1].context.page.url, pages[1].properties.url);

  const order = msgs.map((m) => (m.type === 'page' ? `page ${m.properties.hash}` : m.event));
  assert.deepEqual(order, [
    'page ', 'Product List Viewed',
    'page #/product/P0003', 'Product Viewed', 'Product Added',
    'page #/', 'Product List Viewed', 'Products Searched', 'page #/search/bottle', 'Product List Viewed',
    'page #/product/P0008', 'Product Viewed', 'Product Added',
    'page #/cart', 'Cart Viewed', 'page #/checkout', 'Checkout Started',
    'Checkout Step Completed', 'Order Completed', `page #/order/${result.orderId}`,
  ]);

  const [allList, , searchList] = named(msgs, 'Product List Viewed');
  assert.equal(allList.properties.list_id, 'all');
  assert.equal(allList.properties.products.length, 8);
  assert.equal(searchList.properties.list_id, 'search');
  assert.deepEqual(searchList.properties.products.map((p) => p.product_id), ['P0008']);
  assert.deepEqual(named(msgs, 'Products Searched')[0].properties, { query: 'bottle' });

  const viewed = named(msgs, 'Product Viewed')[0].properties;
  assert.deepEqual(viewed, { product_id: 'P0003', sku: 'STW-SN-42', name: 'Stitchworks Classic Sneakers',
    category: 'Fashion', brand: 'Stitchworks', price: 84.99 });
  const added = named(msgs, 'Product Added').map((m) => m.properties);
  assert.deepEqual(added.map((p) => [p.product_id, p.quantity, p.price]), [['P0003', 1, 84.99], ['P0008', 2, 24.95]]);

  const cart = named(msgs, 'Cart Viewed')[0].properties;
  assert.deepEqual(cart.products.map((p) => [p.product_id, p.quantity]), [['P0003', 1], ['P0008', 2]]);
  const started = named(msgs, 'Checkout Started')[0].properties;
  assert.equal(started.revenue, 134.89);
  assert.equal(started.products.length, 2);
  assert.deepEqual(named(msgs, 'Checkout Step Completed')[0].properties,
    { step: 1, shipping_method: 'standard', payment_method: 'card' });

  const completed = named(msgs, 'Order Completed');
  assert.equal(completed.length, 1);
  const o = completed[0].properties;
  assert.equal(o.order_id, result.orderId);
  assert.equal(o.revenue, 134.89);
  assert.equal(o.total, 134.89);
  assert.equal(o.currency, 'USD');
  assert.deepEqual(o.products.map((p) => [p.product_id, p.sku, p.name, p.category, p.brand, p.price, p.quantity]), [
    ['P0003', 'STW-SN-42', 'Stitchworks Classic Sneakers', 'Fashion', 'Stitchworks', 84.99, 1],
    ['P0008', 'TRM-WB-75', 'Trailmark Insulated Water Bottle', 'Sports & Outdoors', 'Trailmark', 24.95, 2],
  ]);
});

test('clicks on data-shoplake-click elements are tracked; utm_* parameters become the campaign', async (t) => {
  const context = await browser.newContext({ userAgent: DESKTOP_USER_AGENT });
  t.after(() => context.close());
  const page = await context.newPage();
  await page.goto(`${pageBase}/demo/store?key=clicks&utm_source=newsletter&utm_medium=email&utm_campaign=spring&utm_term=coffee`);
  await page.click('[data-test="promo"]');
  await page.waitForSelector('[data-test="product-detail"][data-product-id="P0007"]');
  assert.ok(await page.evaluate(() => shoplake.flush()));

  const msgs = accepted('clicks');
  const click = named(msgs, 'Promotion Clicked');
  assert.equal(click.length, 1);
  assert.deepEqual(click[0].properties, { promotion_id: 'spring-coffee', creative: 'banner' });
  assert.ok(msgs.some((m) => m.type === 'page' && m.properties.hash === '#/product/P0007'));
  for (const m of msgs) {
    assert.deepEqual(m.context.campaign, { source: 'newsletter', medium: 'email', name: 'spring', term: 'coffee' });
  }

  // A click inside the marked element counts; properties are snake_case.
  await page.goto(`${pageBase}/blank`);
  await init(page, { writeKey: 'clicks-2', autoPageviews: false });
  await page.click('#signup span');
  assert.ok(await page.evaluate(() => shoplake.flush()));
  const [signup] = accepted('clicks-2');
  assert.equal(signup.event, 'Newsletter Signup');
  assert.deepEqual(signup.properties, { list_id: 'footer', placement: 'bottom' });
  assert.equal(signup.context.campaign, undefined);
});

test('SPA route changes: pushState, hashchange and popstate make one page view each; replaceState to the same URL none', async (t) => {
  const page = await blankPage(t);
  await init(page, { writeKey: 'spa', flushInterval: 100 });
  await page.evaluate(() => {
    history.pushState({}, '', '/blank?step=2');
    history.replaceState({ scroll: 1 }, '', location.href);
  });
  await page.evaluate(() => { location.hash = '#details'; });
  await page.waitForFunction(() => location.hash === '#details');
  await page.evaluate(() => history.back());
  await page.waitForFunction(() => location.hash === '');
  await sleep(100);
  assert.ok(await page.evaluate(() => shoplake.flush()));

  const pages = accepted('spa').filter((m) => m.type === 'page');
  assert.deepEqual(pages.map((m) => m.properties.url.replace(pageBase, '')),
    ['/blank', '/blank?step=2', '/blank?step=2#details', '/blank?step=2']);
  assert.deepEqual(pages.map((m) => m.properties.referrer.replace(pageBase, '')),
    ['', '/blank', '/blank?step=2', '/blank?step=2#details']);
  assert.equal(pages[1].properties.search, '?step=2');
  assert.equal(pages[1].properties.title, 'Blank');
});

test('identify sets the user id; reset forgets it and starts a new anonymous id and session', async (t) => {
  const page = await blankPage(t);
  await init(page, { writeKey: 'identify', autoPageviews: false });
  await page.evaluate(() => {
    shoplake.identify('U-42', { email: 'jamie@example.com', plan: 'gold' });
    shoplake.track('After Identify');
    shoplake.page('Account', { section: 'orders' });
    shoplake.reset();
    shoplake.track('After Reset');
  });
  assert.ok(await page.evaluate(() => shoplake.flush()));

  const [identify, afterIdentify, account, afterReset] = accepted('identify');
  assert.equal(identify.type, 'identify');
  assert.equal(identify.userId, 'U-42');
  assert.deepEqual(identify.traits, { email: 'jamie@example.com', plan: 'gold' });
  assert.equal(afterIdentify.userId, 'U-42');
  assert.equal(afterIdentify.anonymousId, identify.anonymousId);
  assert.equal(account.type, 'page');
  assert.equal(account.name, 'Account');
  assert.equal(account.properties.section, 'orders');
  assert.equal(account.properties.path, '/blank');
  assert.equal(afterReset.userId, undefined);
  assert.notEqual(afterReset.anonymousId, identify.anonymousId);
  assert.notEqual(afterReset.context.sessionId, identify.context.sessionId);
});

test('e-commerce helpers follow the Segment E-commerce Spec v2', async (t) => {
  const page = await blankPage(t);
  await page.evaluate(() => {
    // Called before init: kept and sent after it.
    shoplake.productView({ id: 'P0001', name: 'Headphones', price: 129 });
  });
  await init(page, { writeKey: 'helpers', autoPageviews: false });
  await page.evaluate(() => {
    const p = { product_id: 'P0002', sku: 'HRT-FP-28', name: 'Pan', category: 'Home & Kitchen', brand: 'Hearthly', price: 34.9 };
    shoplake.productListView('kitchen', [p], { category: 'Home & Kitchen' });
    shoplake.search('frying pan');
    shoplake.addToCart(p);
    shoplake.addToCart(Object.assign({ quantity: 3 }, p));
    shoplake.removeFromCart(p, 2);
    shoplake.cartView([Object.assign({ quantity: 1 }, p)], { cart_id: 'c1' });
    shoplake.checkoutStarted({ order_id: 'O1', total: 34.9, currency: 'EUR', products: [p] });
    shoplake.checkoutStep(2, { shipping_method: 'express' });
    shoplake.purchase({ order_id: 'O1', total: 34.9, currency: 'EUR', products: [Object.assign({ quantity: 1 }, p)] });
    shoplake.refund({ order_id: 'O1', revenue: 34.9, currency: 'EUR' });
    shoplake.review('P0002', '4', 'Heats evenly.');
  });
  assert.ok(await page.evaluate(() => shoplake.flush()));

  const got = accepted('helpers').map((m) => [m.event, m.properties]);
  const p = { product_id: 'P0002', sku: 'HRT-FP-28', name: 'Pan', category: 'Home & Kitchen', brand: 'Hearthly', price: 34.9 };
  assert.deepEqual(got, [
    ['Product Viewed', { product_id: 'P0001', name: 'Headphones', price: 129 }],
    ['Product List Viewed', { list_id: 'kitchen', category: 'Home & Kitchen', products: [p] }],
    ['Products Searched', { query: 'frying pan' }],
    ['Product Added', { ...p, quantity: 1 }],
    ['Product Added', { ...p, quantity: 3 }],
    ['Product Removed', { ...p, quantity: 2 }],
    ['Cart Viewed', { cart_id: 'c1', products: [{ ...p, quantity: 1 }] }],
    ['Checkout Started', { order_id: 'O1', total: 34.9, revenue: 34.9, currency: 'EUR', products: [p] }],
    ['Checkout Step Completed', { step: 2, shipping_method: 'express' }],
    ['Order Completed', { order_id: 'O1', total: 34.9, revenue: 34.9, currency: 'EUR', products: [{ ...p, quantity: 1 }] }],
    ['Order Refunded', { order_id: 'O1', revenue: 34.9, currency: 'EUR' }],
    ['Product Reviewed', { product_id: 'P0002', rating: 4, review_body: 'Heats evenly.' }],
  ]);
});

test('the queue snippet: calls pushed before the script loads are run', async (t) => {
  const context = await browser.newContext({ userAgent: DESKTOP_USER_AGENT });
  t.after(() => context.close());
  const page = await context.newPage();
  await page.goto(`${pageBase}/snippet`);
  await until('the snippet messages', () => accepted('snippet').length >= 2);
  const msgs = accepted('snippet');
  assert.deepEqual(msgs.map((m) => m.event || m.type), ['Before Load', 'page']);
  assert.deepEqual(msgs[0].properties, { early: true });
});

test('opt-out is remembered and nothing is sent until opt-in', async (t) => {
  const page = await blankPage(t);
  await page.evaluate(() => shoplake.optOut());
  await init(page, { writeKey: 'optout', flushInterval: 100 });
  await page.evaluate(() => {
    shoplake.track('Hidden');
    shoplake.purchase({ order_id: 'O-hidden', revenue: 10, products: [] });
  });
  assert.ok(await page.evaluate(() => shoplake.flush()));
  await page.reload();
  await init(page, { writeKey: 'optout', flushInterval: 100 });
  await page.evaluate(() => shoplake.track('Still Hidden'));
  await sleep(800);
  assert.equal(postsFor('optout').length, 0);
  assert.deepEqual(await storedQueue(page), []);

  await page.evaluate(() => { shoplake.optIn(); shoplake.track('Visible'); });
  await until('the message after opt-in', () => accepted('optout').length);
  await sleep(300);
  assert.deepEqual(accepted('optout').map((m) => m.event), ['Visible']);
});

test('Do Not Track is honoured only with respectDoNotTrack', async (t) => {
  const context = await browser.newContext({ userAgent: DESKTOP_USER_AGENT });
  t.after(() => context.close());
  await context.addInitScript(() => {
    Object.defineProperty(Navigator.prototype, 'doNotTrack', { get: () => '1' });
  });
  const respectful = await context.newPage();
  await respectful.goto(`${pageBase}/blank`);
  await init(respectful, { writeKey: 'dnt-on', flushInterval: 100, respectDoNotTrack: true });
  await respectful.evaluate(() => shoplake.track('Tracked?'));
  const other = await context.newPage();
  await other.goto(`${pageBase}/blank`);
  await init(other, { writeKey: 'dnt-off', flushInterval: 100 });
  await other.evaluate(() => shoplake.track('Tracked?'));
  await until('the message without respectDoNotTrack', () => named(accepted('dnt-off'), 'Tracked?').length);
  await sleep(500);
  assert.equal(postsFor('dnt-on').length, 0);
});

test('a 503 is retried with the same messageIds and each message is accepted once (cross-origin)', async (t) => {
  plans.set('retry', [{ status: 503 }]);
  const page = await blankPage(t);
  await init(page, { writeKey: 'retry', host: otherOrigin, flushInterval: 100, autoPageviews: false });
  await page.evaluate(() => { shoplake.track('Retried 1'); shoplake.track('Retried 2'); });
  await until('the retried messages', () => accepted('retry').length >= 2);
  await sleep(300);

  const [first, second, ...more] = postsFor('retry');
  assert.equal(more.length, 0);
  assert.equal(first.status, 503);
  assert.equal(second.status, 200);
  assert.deepEqual(second.batch.map((m) => m.messageId), first.batch.map((m) => m.messageId));
  assert.deepEqual(second.batch, first.batch, 'a retry resends the very same messages');
  const all = postsFor('retry').flatMap((p) => p.batch);
  assert.deepEqual([...countBy(all, 'messageId').values()], [2, 2]);
  assert.deepEqual([...countBy(accepted('retry'), 'messageId').values()], [1, 1]);
  assert.ok(second.at - first.at >= 400, 'backoff before the retry');
  assert.deepEqual(await storedQueue(page), []);
});

test('a 429 waits for Retry-After', async (t) => {
  plans.set('slow', [{ status: 429, retryAfter: '2' }]);
  const page = await blankPage(t);
  await init(page, { writeKey: 'slow', host: otherOrigin, flushInterval: 100, autoPageviews: false });
  await page.evaluate(() => shoplake.track('Throttled'));
  await until('the throttled message', () => accepted('slow').length, 10000);
  const [refused, taken] = postsFor('slow');
  assert.equal(refused.status, 429);
  assert.equal(taken.batch[0].messageId, refused.batch[0].messageId);
  assert.ok(taken.at - refused.at >= 1900, `retried after ${taken.at - refused.at} ms`);
});

test('a 4xx other than 429 drops the batch without retrying', async (t) => {
  plans.set('refused', [{ status: 400 }]);
  const page = await blankPage(t);
  await init(page, { writeKey: 'refused', flushInterval: 100, autoPageviews: false });
  await page.evaluate(() => shoplake.track('Bad'));
  await until('the refused batch', () => postsFor('refused').length);
  await page.evaluate(() => shoplake.track('Good'));
  await until('the next message', () => accepted('refused').length);
  await sleep(1200);
  assert.deepEqual(postsFor('refused').map((p) => [p.status, p.batch.map((m) => m.event)]), [[400, ['Bad']], [200, ['Good']]]);
  assert.deepEqual(await storedQueue(page), []);
});

test('messages queued while the server is down survive a reload and are delivered once it is back', async (t) => {
  down.add('offline');
  const page = await blankPage(t);
  const options = { writeKey: 'offline', flushInterval: 100, autoPageviews: false };
  await init(page, options);
  await page.evaluate(() => { shoplake.track('Offline 1'); shoplake.track('Offline 2'); });
  await until('a failed attempt', () => postsFor('offline').length);
  const ids = postsFor('offline')[0].batch.map((m) => m.messageId);
  assert.equal(ids.length, 2);
  assert.deepEqual(await storedQueue(page), ids);

  await page.reload(); // the beacon of pagehide gets a 503 too
  assert.deepEqual((await storedQueue(page)).sort(), [...ids].sort(), 'kept in localStorage across the reload');
  await init(page, options);
  await page.evaluate(() => shoplake.track('Online'));
  await sleep(300);
  assert.equal(accepted('offline').length, 0);

  down.delete('offline');
  await until('the delivery after the server is back', () => accepted('offline').length >= 3);
  await sleep(300);
  const got = accepted('offline');
  assert.deepEqual(got.map((m) => m.event), ['Offline 1', 'Offline 2', 'Online']);
  assert.deepEqual(got.slice(0, 2).map((m) => m.messageId), ids);
  assert.ok([...countBy(got, 'messageId').values()].every((n) => n === 1));
  assert.deepEqual(await storedQueue(page), []);
});

test('on pagehide the queue is sent by sendBeacon, and not again by the next page', async (t) => {
  const page = await blankPage(t);
  await init(page, { writeKey: 'beacon', flushInterval: 60000, autoPageviews: false });
  await page.evaluate(() => shoplake.track('Leaving', { to: 'elsewhere' }));
  await page.goto(`${pageBase}/elsewhere`);
  await until('the beacon', () => accepted('beacon').length);
  const [post] = postsFor('beacon');
  assert.match(post.contentType, /^text\/plain/);
  assert.deepEqual(post.batch.map((m) => m.event), ['Leaving']);

  await page.goto(`${pageBase}/blank`);
  await init(page, { writeKey: 'beacon', flushInterval: 100, autoPageviews: false });
  await page.evaluate(() => shoplake.track('Back'));
  await until('the next message', () => named(accepted('beacon'), 'Back').length);
  await sleep(300);
  assert.deepEqual(accepted('beacon').map((m) => m.event), ['Leaving', 'Back']);
});

test('batches hold at most batchSize messages and are sent as soon as they are full', async (t) => {
  const page = await blankPage(t);
  await init(page, { writeKey: 'batching', batchSize: 5, flushInterval: 60000, autoPageviews: false });
  await page.evaluate(() => { for (let i = 0; i < 12; i++) shoplake.track('Event ' + i); });
  await until('two full batches', () => postsFor('batching').length >= 2);
  await sleep(300);
  assert.deepEqual(postsFor('batching').map((p) => p.batch.length), [5, 5]);
  assert.ok(await page.evaluate(() => shoplake.flush()));
  assert.deepEqual(postsFor('batching').map((p) => p.batch.length), [5, 5, 2]);
  assert.deepEqual(accepted('batching').map((m) => m.event), Array.from({ length: 12 }, (_, i) => 'Event ' + i));
});

test('the session id changes after 30 minutes without a message', async (t) => {
  const page = await blankPage(t);
  const start = Math.floor(Date.now() / 1000) * 1000;
  await page.evaluate((start) => {
    window.fakeNow = start;
    shoplake.init({ writeKey: 'session', autoPageviews: false, _now: () => window.fakeNow });
    shoplake.track('First');
    window.fakeNow += 29 * 60 * 1000;
    shoplake.track('29 minutes later');
    window.fakeNow += 29 * 60 * 1000;
    shoplake.track('58 minutes after the first');
    window.fakeNow += 31 * 60 * 1000;
    shoplake.track('31 minutes idle');
  }, start);
  assert.ok(await page.evaluate(() => shoplake.flush()));
  const msgs = accepted('session');
  assert.deepEqual(msgs.map((m) => m.timestamp), [0, 29, 58, 89].map((min) => new Date(start + min * 60000).toISOString()));
  const sessions = msgs.map((m) => m.context.sessionId);
  assert.equal(sessions[1], sessions[0]);
  assert.equal(sessions[2], sessions[0]);
  assert.notEqual(sessions[3], sessions[0]);
  assert.match(sessions[3], UUID_V4);
  assert.equal(new Set(msgs.map((m) => m.anonymousId)).size, 1);
});
