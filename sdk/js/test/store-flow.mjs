// Drives the demo store (demo/store.html) served by any server at baseUrl, as
// a shopper would: catalogue -> product -> add to cart -> home -> search ->
// product -> add 2 to cart -> cart -> checkout -> place order. It then makes
// the tracker send everything it has queued and checks that the server took it.
//
// The server must serve the store at GET /demo/store and the tracker at
// GET /sdk.js, and accept POST /v1/batch.

import { chromium } from 'playwright-core';

// Headless Chromium says "HeadlessChrome", which shoplake counts as a bot.
export const DESKTOP_USER_AGENT =
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36';

export const defaultChromium = () => process.env.CHROMIUM || '/usr/bin/chromium';

/**
 * @returns {Promise<{orderId: string, revenue: number, productIds: string[], anonymousId: string,
 *   sessionId: string, events: {type: string, event?: string, name?: string, messageId: string}[]}>}
 *   events: the messages the tracker sent that the server acknowledged, in order.
 */
export async function runStoreFlow({ baseUrl, writeKey, chromiumPath = defaultChromium(), timeoutMs = 15000 }) {
  const base = baseUrl.replace(/\/+$/, '');
  const browser = await chromium.launch({ executablePath: chromiumPath, headless: true });
  try {
    const context = await browser.newContext({ userAgent: DESKTOP_USER_AGENT, viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    page.setDefaultTimeout(timeoutMs);

    // What the tracker sent and the server acknowledged (by fetch or beacon).
    const events = [];
    const failures = [];
    page.on('requestfinished', async (req) => {
      if (req.method() !== 'POST' || !new URL(req.url()).pathname.endsWith('/v1/batch')) return;
      const res = await req.response();
      const status = res ? res.status() : 0;
      if (status < 200 || status > 299) { failures.push(status); return; }
      const { batch } = JSON.parse(req.postData() || '{}');
      for (const m of batch || []) events.push({ type: m.type, event: m.event, name: m.name, messageId: m.messageId });
    });
    page.on('requestfailed', (req) => {
      if (req.url().includes('/v1/batch')) failures.push(req.failure()?.errorText || 'failed');
    });

    await page.goto(`${base}/demo/store?key=${encodeURIComponent(writeKey)}`);
    const loaded = await page.evaluate(() => !!(window.shoplake && window.shoplake.anonymousId));
    if (!loaded) throw new Error(`the tracker did not load from ${base}/sdk.js`);

    const productIds = [];
    const add = async (id, quantity) => {
      await page.waitForSelector(`[data-test="product-detail"][data-product-id="${id}"]`);
      await page.fill('[data-test="quantity"]', String(quantity));
      await page.click('[data-test="add-to-cart"]');
      productIds.push(id);
    };

    await page.click('[data-test="product-P0003"]');
    await add('P0003', 1);
    await page.click('[data-test="home"]');
    await page.fill('[data-test="search-input"]', 'bottle');
    await page.click('[data-test="search-submit"]');
    await page.click('[data-test="product-P0008"]');
    await add('P0008', 2);
    await page.click('[data-test="cart"]');
    await page.click('[data-test="checkout"]');
    await page.click('[data-test="place-order"]');

    const orderId = (await page.textContent('[data-test="order-id"]')).trim();
    const revenue = Number(await page.getAttribute('[data-test="order-revenue"]', 'data-value'));
    const ids = await page.evaluate(() => ({ anonymousId: shoplake.anonymousId(), sessionId: shoplake.sessionId() }));

    // Send what is still queued, then let the request listeners finish.
    const delivered = await page.evaluate(() => shoplake.flush());
    await page.waitForTimeout(200);
    // The tracker drops a batch refused with a 4xx (but 429): that is a failure here.
    const refused = failures.filter((s) => s >= 400 && s < 500 && s !== 429);
    if (!delivered || refused.length) {
      throw new Error(`the server did not accept every event (failed answers: ${failures.join(', ') || 'none'})`);
    }
    await context.close();
    return { orderId, revenue, productIds, anonymousId: ids.anonymousId, sessionId: ids.sessionId, events };
  } finally {
    await browser.close();
  }
}
