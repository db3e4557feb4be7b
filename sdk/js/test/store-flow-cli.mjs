// node sdk/js/test/store-flow-cli.mjs <baseUrl> <writeKey>
//
// Runs the demo store flow (store-flow.mjs) against a server and prints the
// result as one JSON line on stdout. Exits 1 with the error on stderr if the
// flow fails, 2 on bad usage. The browser is $CHROMIUM or /usr/bin/chromium.

import { runStoreFlow } from './store-flow.mjs';

const [baseUrl, writeKey] = process.argv.slice(2);
if (!baseUrl || !writeKey) {
  // `node --test sdk/js/test/` loads every file of the folder: nothing to do then.
  if (process.env.NODE_TEST_CONTEXT) process.exit(0);
  console.error('usage: node store-flow-cli.mjs <baseUrl> <writeKey>');
  process.exit(2);
}

try {
  const result = await runStoreFlow({ baseUrl, writeKey });
  process.stdout.write(JSON.stringify(result) + '\n');
} catch (err) {
  console.error(`store flow failed: ${err && err.stack ? err.stack : err}`);
  process.exit(1);
}
