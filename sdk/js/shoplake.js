/*! shoplake.js 0.1.0 | browser tracker for shoplake | Apache-2.0 */
// Usage, options and delivery contract: sdk/js/README.md in shoplake's repository.
(function () {
  'use strict';
  if (window.shoplake && window.shoplake.init) return;

  const VERSION = '0.1.0';
  const P = 'shoplake_';
  const MIN = 60000;
  const SESSION_MS = 30 * MIN;
  const STALE_MS = 10 * MIN; // a queue not written for this long is dead
  const DAY_MS = 1440 * MIN;
  const MAX_QUEUE = 1000;
  const MAX_ATTEMPTS = 10;
  const BEACON_BYTES = 64000;

  const script = document.currentScript;
  const waiting = Array.isArray(window.shoplake) ? window.shoplake : [];
  const early = [];
  const memory = {};
  let opts = null;
  const tab = uuid().slice(0, 8); // names this tab's queue
  let queue = []; // messages not yet acknowledged, oldest first
  let sending = null;
  let inflight = null;
  let attempts = 0; // failures of the batch at the head of the queue
  let retryAt = 0;
  let healthy = true; // the last request was answered with 2xx or 4xx
  let timer = null;
  let timerAt = 0;
  let lastUrl = null;
  let referrer = document.referrer;

  const url = () => opts.host + '/v1/batch';
  const log = (...a) => opts && opts.debug && console.log('[shoplake]', ...a);
  const now = () => (opts && opts._now ? opts._now() : Date.now());
  const bytes = (s) => new Blob([s]).size;
  const ids = (list) => new Set(list.map((m) => m.messageId));

  function load(key) {
    try {
      const v = localStorage.getItem(P + key);
      if (v !== null) return JSON.parse(v);
    } catch (e) { /* blocked or corrupt */ }
    return memory[key] || null;
  }
  function save(key, value) {
    memory[key] = value;
    try { localStorage.setItem(P + key, JSON.stringify(value)); } catch (e) { /* full */ }
  }
  function drop(key) {
    delete memory[key];
    try { localStorage.removeItem(P + key); } catch (e) { /* blocked */ }
  }

  function uuid() {
    if (crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 15) | 64;
    b[8] = (b[8] & 63) | 128;
    const h = Array.from(b, (x) => (x + 256).toString(16).slice(1)).join('');
    return h.replace(/^(.{8})(.{4})(.{4})(.{4})/, '$1-$2-$3-$4-');
  }

  function blocked() {
    return !!(load('optout') || (opts && opts.respectDoNotTrack &&
      (navigator.doNotTrack === '1' || window.doNotTrack === '1')));
  }

  function anonymousId() {
    let id = load('aid');
    if (!id) save('aid', (id = uuid()));
    return id;
  }

  // Shared by the tabs; a new one after 30 minutes without a message.
  function sessionId(t) {
    let s = load('session');
    if (!s || !(t - s.last < SESSION_MS)) s = { id: uuid() };
    s.last = t;
    save('session', s);
    return s.id;
  }

  function pageInfo() {
    return { url: location.href, path: location.pathname, search: location.search,
      hash: location.hash, referrer: referrer, title: document.title };
  }

  function campaign() {
    let c;
    new URLSearchParams(location.search).forEach((v, k) => {
      if (k.indexOf('utm_') === 0) (c = c || {})[k === 'utm_campaign' ? 'name' : k.slice(4)] = v;
    });
    return c;
  }

  function message(type, fields) {
    const t = now();
    return Object.assign({
      type: type,
      messageId: uuid(),
      anonymousId: anonymousId(),
      userId: load('uid') || undefined,
      timestamp: new Date(t).toISOString(),
      context: {
        library: { name: 'shoplake.js', version: VERSION },
        page: pageInfo(),
        userAgent: navigator.userAgent,
        locale: navigator.language,
        screen: { width: screen.width, height: screen.height },
        sessionId: sessionId(t),
        campaign: campaign(),
      },
    }, fields);
  }

  function enqueue(msg) {
    if (blocked()) return log('opted out: not sent', msg);
    queue.push(msg);
    queue.splice(0, queue.length - MAX_QUEUE);
    persist();
    log(msg.type, msg.event || msg.name || '', msg);
    soon();
  }

  function persist(closed) {
    if (queue.length) save('q_' + tab, { t: closed ? 0 : Date.now(), q: queue });
    else drop('q_' + tab);
  }

  function forget(batch) {
    const gone = ids(batch);
    queue = queue.filter((m) => !gone.has(m.messageId));
    persist();
  }

  // Takes over the queues of closed and dead tabs.
  function adopt() {
    const keys = [];
    try {
      for (let i = 0; i < localStorage.length; i++) keys.push(localStorage.key(i));
    } catch (e) { /* blocked */ }
    for (const key of keys) {
      if (key.indexOf(P + 'q_') !== 0) continue;
      const v = load(key.slice(P.length)) || {};
      if (v.t && Date.now() - v.t < STALE_MS) continue;
      drop(key.slice(P.length));
      const seen = ids(queue);
      if (!blocked()) queue.push(...(v.q || []).filter((m) => !seen.has(m.messageId)));
    }
    if (!queue.length) return;
    queue.splice(0, queue.length - MAX_QUEUE);
    healthy = false; // they were left unsent: the server may be down
    log('resending', queue.length);
    persist();
  }

  function schedule(ms) {
    const at = Date.now() + ms;
    if (timer && timerAt <= at) return;
    clearTimeout(timer);
    timerAt = at;
    timer = setTimeout(() => { timer = null; sendNext(); }, ms);
  }

  const soon = () => schedule(queue.length >= opts.batchSize ? 0 : opts.flushInterval);

  function body(batch) {
    return JSON.stringify({ batch: batch, sentAt: new Date(now()).toISOString(), writeKey: opts.writeKey });
  }

  // Retry-After (seconds or a date) wins over exponential backoff with jitter.
  function backoff(retryAfter) {
    let ms = retryAfter ? (/^\d+$/.test(retryAfter) ? retryAfter * 1000 : Date.parse(retryAfter) - Date.now()) : NaN;
    if (!(ms >= 0)) {
      const cap = Math.min(MIN, 1000 * Math.pow(2, attempts - 1));
      ms = cap / 2 + (Math.random() * cap) / 2;
    }
    return Math.min(ms, STALE_MS);
  }

  // Sends the batch at the head of the queue unless one is in flight or backoff says wait.
  function sendNext() {
    if (!opts || inflight) return inflight || Promise.resolve();
    const t = Date.now();
    queue = queue.filter((m) => t - Date.parse(m.timestamp) < DAY_MS);
    persist(); // also tells other tabs that this one is alive
    if (!queue.length || navigator.onLine === false) return Promise.resolve();
    if (retryAt > t) return Promise.resolve(schedule(retryAt - t));
    return (inflight = send(queue.slice(0, opts.batchSize)).then(() => { inflight = null; }));
  }

  async function send(batch) {
    sending = batch;
    const data = body(batch);
    let status = 0;
    let retryAfter;
    try {
      const res = await fetch(url(), {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: data,
        credentials: 'omit',
        keepalive: bytes(data) < BEACON_BYTES,
      });
      status = res.status;
      retryAfter = res.headers.get('Retry-After');
    } catch (e) { /* network error, or an answer without CORS headers */ }
    sending = null;
    // 2xx: done; 4xx but 429: refused, so dropped; the rest: retried.
    healthy = (status >= 200 && status < 300) || (status >= 400 && status < 500 && status !== 429);
    if (healthy || ++attempts >= MAX_ATTEMPTS) {
      if (status < 200 || status > 299) log('dropped after HTTP', status, batch);
      forget(batch);
      attempts = retryAt = 0;
    } else {
      retryAt = Date.now() + backoff(retryAfter);
      log('HTTP', status, 'retry', attempts, 'at', new Date(retryAt));
    }
    if (queue.length) soon();
  }

  // Sends by sendBeacon in pieces of at most 64 KB; false if one was refused.
  function beacon(msgs) {
    let ok = true;
    let piece = [];
    let size = 200;
    const go = () => {
      if (piece.length) {
        ok = navigator.sendBeacon(url(), new Blob([body(piece)], { type: 'text/plain' })) && ok;
      }
      piece = [];
      size = 200;
    };
    for (const m of msgs) {
      const n = bytes(JSON.stringify(m)) + 1;
      if (n > BEACON_BYTES - 200) { ok = false; continue; }
      if (size + n > BEACON_BYTES) go();
      piece.push(m);
      size += n;
    }
    go();
    return ok;
  }

  // The page is hidden or unloading. Beacons are trusted while the server
  // answers; otherwise the messages stay queued for the next page.
  function leave(unloading) {
    if (queue.length && navigator.sendBeacon && navigator.onLine !== false) {
      const flying = ids(sending || []);
      const rest = queue.filter((m) => !flying.has(m.messageId));
      if (beacon(rest) && healthy) forget(unloading ? queue : rest);
    }
    if (unloading) persist(true);
  }

  function routeChanged() {
    if (location.href !== lastUrl) api.page();
  }

  function watchRoutes() {
    ['pushState', 'replaceState'].forEach((name) => {
      const original = history[name];
      history[name] = function () {
        const result = original.apply(this, arguments);
        routeChanged();
        return result;
      };
    });
    addEventListener('popstate', routeChanged);
    addEventListener('hashchange', routeChanged);
  }

  // data-shoplake-click="Name" data-shoplake-list-id="x": "Name" with {list_id: "x"}
  function onClick(e) {
    const el = e.target.closest && e.target.closest('[data-shoplake-click]');
    if (!el) return;
    const props = {};
    for (const k in el.dataset) {
      if (k.indexOf('shoplake') || k === 'shoplakeClick') continue;
      props[k.slice(8).replace(/[A-Z]/g, (c, i) => (i ? '_' : '') + c.toLowerCase())] = el.dataset[k];
    }
    api.track(el.dataset.shoplakeClick, props);
  }

  function product(p, quantity) {
    const r = Object.assign({}, p);
    if (r.product_id == null) r.product_id = r.id;
    delete r.id;
    if (quantity !== undefined) r.quantity = +quantity;
    return r;
  }

  // A cart line: the quantity given, else the product's, else 1.
  const line = (p, quantity) => product(p, quantity != null ? quantity : p && p.quantity != null ? p.quantity : 1);

  const products = (list) => (list || []).map((p) => product(p));

  function order(o) {
    const r = Object.assign({}, o);
    if (r.products) r.products = products(r.products);
    if (r.revenue == null) r.revenue = r.total;
    return r;
  }

  // Calls that make a message wait for init().
  const later = (fn) => function () {
    if (opts) fn.apply(null, arguments);
    else early.push([fn, arguments]);
  };
  const merge = (props, more) => Object.assign({}, props, more);

  const api = {
    VERSION: VERSION,

    init(options) {
      if (opts) return log('init called twice');
      const o = Object.assign({ autoPageviews: true, spa: true, clicks: true, respectDoNotTrack: false,
        flushInterval: 1000, batchSize: 20, debug: false }, options);
      if (!o.writeKey) throw new Error('shoplake.init: writeKey is required');
      o.host = String(o.host || (script && script.src ? new URL(script.src).origin : location.origin)).replace(/\/+$/, '');
      opts = o;
      adopt();
      addEventListener('pagehide', () => leave(true));
      addEventListener('pageshow', (e) => e.persisted && persist());
      document.addEventListener('visibilitychange', () => document.hidden && leave(false));
      addEventListener('online', () => { retryAt = 0; sendNext(); });
      if (o.spa) watchRoutes();
      if (o.clicks) document.addEventListener('click', onClick, true);
      early.splice(0).forEach((c) => c[0].apply(null, c[1]));
      if (o.autoPageviews) routeChanged();
      if (queue.length) soon();
      log('ready', o);
    },

    page: later((name, props) => {
      if (name && typeof name === 'object') { props = name; name = undefined; }
      if (lastUrl && lastUrl !== location.href) referrer = lastUrl;
      lastUrl = location.href;
      enqueue(message('page', { name: name, properties: merge(pageInfo(), props) }));
    }),

    track: later((event, props) => {
      if (event) enqueue(message('track', { event: String(event), properties: merge(props) }));
    }),

    identify: later((userId, traits) => {
      if (userId && typeof userId === 'object') { traits = userId; userId = null; }
      if (userId != null) save('uid', String(userId));
      enqueue(message('identify', { traits: merge(traits) }));
    }),

    reset() {
      ['uid', 'aid', 'session'].forEach(drop);
    },

    optOut() {
      save('optout', 1);
      queue = [];
      persist();
    },

    optIn() {
      drop('optout');
    },

    // Sends all that is queued now; resolves to whether the queue is empty.
    async flush() {
      retryAt = 0;
      for (let i = 0; opts && queue.length && i < 100 && !retryAt; i++) await sendNext();
      return !queue.length;
    },

    anonymousId: anonymousId,
    userId: () => load('uid'),
    sessionId: () => (load('session') || {}).id || null,

    // Runs the snippet's queued calls: ['method', ...args].
    push(...calls) {
      calls.forEach((c) => api[c[0]] && api[c[0]](...c.slice(1)));
    },

    productView: (p) => api.track('Product Viewed', product(p)),
    productListView: (listId, list, props) =>
      api.track('Product List Viewed', merge(props, { list_id: listId, products: products(list) })),
    search: (query, props) => api.track('Products Searched', merge(props, { query: query })),
    addToCart: (p, quantity) => api.track('Product Added', line(p, quantity)),
    removeFromCart: (p, quantity) => api.track('Product Removed', line(p, quantity)),
    cartView: (list, props) => api.track('Cart Viewed', merge(props, { products: products(list) })),
    checkoutStarted: (o) => api.track('Checkout Started', order(o)),
    checkoutStep: (step, props) => api.track('Checkout Step Completed', merge(props, { step: step })),
    purchase: (o) => api.track('Order Completed', order(o)),
    refund: (o) => api.track('Order Refunded', order(o)),
    review: (productId, rating, text, props) => api.track('Product Reviewed',
      merge(props, { product_id: productId, rating: +rating, review_body: text })),
  };

  window.shoplake = api;
  api.push(...waiting);
})();
