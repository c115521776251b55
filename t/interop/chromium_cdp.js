#!/usr/bin/env node
// Drives headless Chromium through the DevTools protocol over a pipe
// (--remote-debugging-pipe: fds 3 and 4, NUL-separated JSON; no port, no
// npm package needed) to run the browser interop page
// t/htdocs/interop/chromium.html and read its result.
//
//   node t/interop/chromium_cdp.js PAGE_URL [--chromium /usr/bin/chromium]
//                                          [--timeout SECONDS]
//
// Starts Chromium with a fresh --user-data-dir (mkdtemp under TMPDIR, removed
// at the end), navigates to PAGE_URL, polls window.interopResult until the
// page has finished, prints one line per check of the page, the browser's
// own WebSocket diagnostics (Network.webSocketFrameError, console errors),
// and exits 0 only when the page reports success.  Chromium runs in its own
// process group, which is killed (TERM, then KILL) however this script
// ends, so no browser process outlives it.  Everything is bounded by
// --timeout (default 25 s).
'use strict';

const { spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const args = process.argv.slice(2);
let pageUrl = null;
let chromiumBin = process.env.CHROMIUM || '/usr/bin/chromium';
let timeoutSec = 25;
while (args.length) {
  const a = args.shift();
  if (a === '--chromium') chromiumBin = args.shift();
  else if (a === '--timeout') timeoutSec = Number(args.shift());
  else if (!pageUrl) pageUrl = a;
  else { console.error('unexpected argument ' + a); process.exit(2); }
}
if (!pageUrl) {
  console.error('usage: chromium_cdp.js PAGE_URL [--chromium PATH] [--timeout SECONDS]');
  process.exit(2);
}

const t0 = Date.now();
const stamp = () => ((Date.now() - t0) / 1000).toFixed(2) + 's';
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'ws-interop-chromium-'));
let child = null;
let finished = false;

function childGone() {
  return !child || child.exitCode !== null || child.signalCode !== null;
}

function waitExit(ms) {
  return new Promise((resolve) => {
    if (childGone()) { resolve(); return; }
    const t = setTimeout(resolve, ms);
    child.once('exit', () => { clearTimeout(t); resolve(); });
  });
}

// Browser.close, then SIGTERM to the process group, then SIGKILL; waits
// for (and so reaps) the main process.  Helpers that left the group on
// their own (crashpad) exit when the browser does.
async function cleanup() {
  if (child && !childGone()) {
    try {
      toBrowser.write(JSON.stringify({ id: nextId++, method: 'Browser.close' }) + '\0');
    } catch (e) { /* pipe gone */ }
    await waitExit(2000);
    if (!childGone()) {
      try { process.kill(-child.pid, 'SIGTERM'); } catch (e) { /* gone */ }
      await waitExit(2000);
    }
  }
  if (child) { try { process.kill(-child.pid, 'SIGKILL'); } catch (e) { /* none left */ } }
  await waitExit(1000);
  try { fs.rmSync(profile, { recursive: true, force: true }); } catch (e) { /* best effort */ }
}

function done(code, msg) {
  if (finished) return;
  finished = true;
  if (msg) console.log(msg);
  const hard = setTimeout(() => process.exit(code), 8000);
  cleanup().then(() => { clearTimeout(hard); process.exit(code); });
}

process.on('SIGTERM', () => done(1, 'FAILED interrupted (SIGTERM)'));
process.on('SIGINT', () => done(1, 'FAILED interrupted (SIGINT)'));
const overall = setTimeout(() => done(1, 'FAILED overall timeout of ' + timeoutSec + ' s (' + stamp() + ')'),
                           timeoutSec * 1000);

const flags = [
  '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-quic', '--disable-dev-shm-usage', '--disable-extensions',
  '--no-default-browser-check', '--mute-audio', '--password-store=basic',
  // the test CA is generated at test time: the browser cannot know it
  '--ignore-certificate-errors',
  '--user-data-dir=' + profile,
  '--remote-debugging-pipe',
  'about:blank',
];

const stderrLog = [];
child = spawn(chromiumBin, flags, {
  stdio: ['ignore', 'pipe', 'pipe', 'pipe', 'pipe'],
  detached: true, // own process group: killed as a whole
  // everything the browser writes goes under the fresh profile directory
  // (the test user's HOME may not exist or not be writable)
  env: Object.assign({}, process.env, {
    HOME: profile,
    XDG_CONFIG_HOME: path.join(profile, 'xdg-config'),
    XDG_CACHE_HOME: path.join(profile, 'xdg-cache'),
  }),
});
child.on('error', (e) => done(1, 'FAILED start ' + chromiumBin + ': ' + e.message));
for (const s of [child.stdout, child.stderr]) {
  s.on('data', (d) => {
    for (const line of d.toString().split('\n')) if (line.trim()) stderrLog.push(line);
    if (stderrLog.length > 200) stderrLog.splice(0, stderrLog.length - 200);
  });
}
child.on('exit', (code, sig) => {
  if (!finished) {
    console.log('       chromium output (last lines):\n         ' + stderrLog.slice(-20).join('\n         '));
    done(1, 'FAILED chromium exited early (code ' + code + ', signal ' + sig + ') at ' + stamp());
  }
});

// --- CDP over the pipe
const toBrowser = child.stdio[3];
const fromBrowser = child.stdio[4];
let nextId = 1;
const pending = new Map();
const eventHandlers = [];
let inBuf = Buffer.alloc(0);
fromBrowser.on('data', (chunk) => {
  inBuf = Buffer.concat([inBuf, chunk]);
  let i;
  while ((i = inBuf.indexOf(0)) >= 0) {
    const msg = JSON.parse(inBuf.subarray(0, i).toString('utf8'));
    inBuf = inBuf.subarray(i + 1);
    if (msg.id && pending.has(msg.id)) {
      const p = pending.get(msg.id);
      pending.delete(msg.id);
      if (msg.error) p.reject(new Error(p.method + ': ' + JSON.stringify(msg.error)));
      else p.resolve(msg.result);
    } else if (msg.method) {
      for (const h of eventHandlers) h(msg);
    }
  }
});
fromBrowser.on('error', () => { /* exit handler reports */ });
toBrowser.on('error', () => { /* exit handler reports */ });

function cdp(method, params, sessionId) {
  const id = nextId++;
  const msg = { id, method, params: params || {} };
  if (sessionId) msg.sessionId = sessionId;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject, method });
    toBrowser.write(JSON.stringify(msg) + '\0');
  });
}

const diagnostics = [];
eventHandlers.push((m) => {
  const p = m.params || {};
  switch (m.method) {
    case 'Network.webSocketFrameError':
      diagnostics.push('webSocketFrameError: ' + p.errorMessage);
      console.log('       [' + stamp() + '] browser WebSocket frame error: ' + p.errorMessage);
      break;
    case 'Network.webSocketHandshakeResponseReceived':
      console.log('       [' + stamp() + '] handshake response: ' + p.response.status + ' ' +
                  p.response.statusText + ' ' + JSON.stringify(p.response.headers));
      break;
    case 'Network.responseReceived':
      if (p.type === 'Document' && p.response && p.response.status >= 400) {
        done(1, 'FAILED loading ' + p.response.url + ': HTTP ' + p.response.status + ' ' +
             p.response.statusText);
      }
      break;
    case 'Network.webSocketClosed':
      console.log('       [' + stamp() + '] browser: WebSocket closed');
      break;
    case 'Runtime.exceptionThrown':
      diagnostics.push('exception: ' + JSON.stringify(p.exceptionDetails && p.exceptionDetails.text) +
                       ' ' + JSON.stringify(p.exceptionDetails && p.exceptionDetails.exception &&
                                            p.exceptionDetails.exception.description));
      console.log('       [' + stamp() + '] page exception: ' + diagnostics[diagnostics.length - 1]);
      break;
    case 'Log.entryAdded':
      if (p.entry && (p.entry.level === 'error' || p.entry.level === 'warning')) {
        console.log('       [' + stamp() + '] browser log ' + p.entry.level + ': ' + p.entry.text +
                    (p.entry.url ? ' (' + p.entry.url + ')' : ''));
      }
      break;
    default:
  }
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const version = await cdp('Browser.getVersion');
  console.log('       ' + version.product + ' (' + version.userAgent + ')');
  await cdp('Security.setIgnoreCertificateErrors', { ignore: true });
  const { targetInfos } = await cdp('Target.getTargets');
  let page = targetInfos.find((t) => t.type === 'page');
  const targetId = page ? page.targetId : (await cdp('Target.createTarget', { url: 'about:blank' })).targetId;
  const { sessionId } = await cdp('Target.attachToTarget', { targetId, flatten: true });
  await cdp('Runtime.enable', {}, sessionId);
  await cdp('Log.enable', {}, sessionId);
  await cdp('Network.enable', {}, sessionId);
  await cdp('Page.enable', {}, sessionId);
  const nav = await cdp('Page.navigate', { url: pageUrl }, sessionId);
  if (nav.errorText) return done(1, 'FAILED navigate to ' + pageUrl + ': ' + nav.errorText);
  console.log('       [' + stamp() + '] navigated to ' + pageUrl);

  let result = null;
  while (!result) {
    await sleep(200);
    const r = await cdp('Runtime.evaluate', {
      expression: 'window.interopResult && window.interopResult.done ? JSON.stringify(window.interopResult) : null',
      returnByValue: true,
    }, sessionId);
    if (r.result && typeof r.result.value === 'string') result = JSON.parse(r.result.value);
  }
  console.log('       [' + stamp() + '] page finished');
  let failed = 0;
  for (const c of result.checks) {
    console.log((c.ok ? 'ok     ' : 'FAILED ') + c.name + (c.ok ? '' : ': ' + c.detail));
    if (!c.ok) failed++;
  }
  console.log('       close event seen by the page: ' + JSON.stringify(result.close));
  if (diagnostics.length) {
    console.log('FAILED browser diagnostics: ' + diagnostics.join('; '));
    failed++;
  }
  clearTimeout(overall);
  if (!result.ok || failed) return done(1, (failed || 1) + ' check(s) FAILED');
  return done(0, 'all checks passed (' + result.checks.length + ' checks, ' + stamp() + ')');
}

main().catch((e) => done(1, 'FAILED ' + (e && e.stack ? e.stack : e)));
