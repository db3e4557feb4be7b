// node sdk/js/test/dashboard-flow-cli.mjs <baseUrl> <user> <password> <writeKey> <screenshotDir>
//
// Runs dashboard-flow.mjs against a server and prints the result as one JSON
// line on stdout; exits 1 with the error on stderr if the flow fails, 2 on bad
// usage. The browser is $CHROMIUM or /usr/bin/chromium.

import { mkdirSync } from 'node:fs';
import { runDashboardFlow } from './dashboard-flow.mjs';

const [baseUrl, user, password, writeKey, outDir] = process.argv.slice(2);
if (!outDir) {
  // `node --test sdk/js/test/` loads every file of the folder: nothing to do then.
  if (process.env.NODE_TEST_CONTEXT) process.exit(0);
  console.error('usage: node dashboard-flow-cli.mjs <baseUrl> <user> <password> <writeKey> <screenshotDir>');
  process.exit(2);
}

try {
  mkdirSync(outDir, { recursive: true });
  const result = await runDashboardFlow({ baseUrl, user, password, writeKey, outDir });
  process.stdout.write(JSON.stringify(result) + '\n');
} catch (err) {
  console.error(`dashboard flow failed: ${err && err.stack ? err.stack : err}`);
  process.exit(1);
}
