// Drives the dashboard of a running `shoplake serve` in headless Chromium as
// a shop owner would: log in, read the overview, walk every page (saving a
// screenshot of each, light and dark), run a query on the SQL page; then buy
// in the demo store and watch the order appear on the Live page.

import { chromium } from 'playwright-core';
import { runStoreFlow, defaultChromium } from './store-flow.mjs';

const PAGES = ['/', '/funnel', '/products', '/customers', '/traffic', '/pipeline', '/sql', '/live', '/admin'];

/**
 * @returns {Promise<{kpis: Object<string, string>, funnelSteps: number, sql: string,
 *   pages: Object<string, string>, liveOrders: number, liveOrderId: string}>}
 */
export async function runDashboardFlow({ baseUrl, user, password, writeKey, outDir, chromiumPath = defaultChromium() }) {
  const base = baseUrl.replace(/\/+$/, '');
  const browser = await chromium.launch({ executablePath: chromiumPath, headless: true });
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    page.setDefaultTimeout(20000);
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));

    // not logged in: the dashboard sends us to the login page
    await page.goto(`${base}/`);
    if (!page.url().endsWith('/login')) throw new Error(`expected the login page, got ${page.url()}`);
    await page.fill('#name', user);
    await page.fill('#password', password);
    await Promise.all([page.waitForURL(`${base}/`), page.click('button[type=submit]')]);

    const kpis = {};
    for (const tile of await page.$$('.tile')) {
      const k = await tile.getAttribute('data-kpi');
      kpis[k] = (await (await tile.$('.v')).textContent()).trim();
    }

    const pages = {};
    for (const path of PAGES) {
      await page.goto(`${base}${path}`);
      const h1 = (await page.textContent('h1')).trim();
      pages[path] = h1;
      if (path === '/live') await page.waitForFunction(() => !document.querySelector('[data-kpi="Orders today"] .v').textContent.includes('…'));
      const name = path === '/' ? 'overview' : path.slice(1);
      await page.screenshot({ path: `${outDir}/${name}.png`, fullPage: true });
    }
    // a phone, in dark mode
    const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, colorScheme: 'dark', storageState: await context.storageState() });
    const p2 = await phone.newPage();
    await p2.goto(`${base}/`);
    await p2.screenshot({ path: `${outDir}/overview-phone-dark.png`, fullPage: true });
    await phone.close();

    await page.goto(`${base}/funnel`);
    const funnelSteps = await page.$$eval('figure.chart rect.bar', (r) => r.length);

    // a query on the SQL page
    await page.goto(`${base}/sql`);
    await page.fill('#sql', 'SELECT count(*) AS n FROM processed.transactions');
    await page.click('#run');
    await page.waitForSelector('#sql-result tbody td');
    const sql = (await page.textContent('#sql-result tbody td')).trim();
    await page.screenshot({ path: `${outDir}/sql-result.png`, fullPage: true });

    // a purchase in the demo store shows up on the Live page
    await page.goto(`${base}/live`);
    const ordersBefore = Number((await page.textContent('[data-kpi="Orders today"] .v')).replace(/[^0-9]/g, '') || 0);
    const flow = await runStoreFlow({ baseUrl: base, writeKey, chromiumPath });
    await page.waitForFunction(
      (before) => Number(document.querySelector('[data-kpi="Orders today"] .v').textContent.replace(/[^0-9]/g, '') || 0) > before,
      ordersBefore,
      { timeout: 30000 },
    );
    await page.waitForSelector(`#live-events td:text("purchase")`);
    const liveOrders = Number((await page.textContent('[data-kpi="Orders today"] .v')).replace(/[^0-9]/g, ''));
    await page.screenshot({ path: `${outDir}/live-after-purchase.png`, fullPage: true });
    if (errors.length) throw new Error(`page errors: ${errors.join('; ')}`);
    return { kpis, funnelSteps, sql, pages, liveOrders, liveOrderId: flow.orderId };
  } finally {
    await browser.close();
  }
}
