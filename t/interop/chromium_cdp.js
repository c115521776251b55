#!/usr/bin/env node
// Drives headless Chromium through the DevTools protocol over a pipe
// (t/interop/cdp.js) to run the browser interop page
// t/htdocs/interop/chromium.html and read its result.
//
//   node t/interop/chromium_cdp.js PAGE_URL [--chromium /usr/bin/chromium]
//                                          [--timeout SECONDS]
//
// Navigates to PAGE_URL, polls window.interopResult until the page has
// finished, prints one line per check of the page, the browser's own
// WebSocket diagnostics (Network.webSocketFrameError, console errors), and
// exits 0 only when the page reports success.  No browser process outlives
// it; everything is bounded by --timeout (default 25 s).
'use strict';

const { launch, parseArgs, sleep } = require('./cdp');

const opts = parseArgs(process.argv.slice(2),
                       'chromium_cdp.js PAGE_URL [--chromium PATH] [--timeout SECONDS]');
const b = launch(opts);

async function main() {
  await b.version();
  const session = await b.openPage(opts.url);
  let result = null;
  while (!result) {
    await sleep(200);
    const v = await b.evaluate(session,
      'window.interopResult && window.interopResult.done ? JSON.stringify(window.interopResult) : null');
    if (typeof v === 'string') result = JSON.parse(v);
  }
  b.say('page finished');
  let failed = 0;
  for (const c of result.checks) {
    console.log((c.ok ? 'ok     ' : 'FAILED ') + c.name + (c.ok ? '' : ': ' + c.detail));
    if (!c.ok) failed++;
  }
  console.log('       close event seen by the page: ' + JSON.stringify(result.close));
  if (b.diagnostics.length) {
    console.log('FAILED browser diagnostics: ' + b.diagnostics.join('; '));
    failed++;
  }
  if (!result.ok || failed) return b.done(1, (failed || 1) + ' check(s) FAILED');
  return b.done(0, 'all checks passed (' + result.checks.length + ' checks, ' + b.stamp() + ')');
}

main().catch((e) => b.done(1, 'FAILED ' + (e && e.stack ? e.stack : e)));
