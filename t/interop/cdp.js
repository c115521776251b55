// Headless Chromium over the DevTools protocol on a pipe
// (--remote-debugging-pipe: fds 3 and 4, NUL-separated JSON; no port, no
// npm package needed).  Shared by t/interop/chromium_cdp.js (the interop
// page) and t/interop/demo_cdp.js (the demo page).
//
//   const { launch } = require('./cdp');
//   const b = launch({ chromium: '/usr/bin/chromium', timeoutSec: 25 });
//   const session = await b.openPage(url);      // a tab, domains enabled
//   const v = await b.evaluate(session, 'document.title');
//   b.done(0, 'all checks passed');             // cleans up and exits
//
// launch() starts Chromium with a fresh --user-data-dir (mkdtemp under
// TMPDIR, removed at the end) in its own process group, which is killed
// (Browser.close, TERM, then KILL) however the script ends; done() is the
// one way out and exits the process.  Everything is bounded by timeoutSec.
// The browser's WebSocket frame errors and page exceptions (any tab) are
// printed and collected in b.diagnostics; a document answered with an HTTP
// error ends the run at once.
'use strict';

const { spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Parses "URL [--chromium PATH] [--timeout SECONDS]" (plus the extra
// "--name value" options listed in extra); exits 2 with usage otherwise.
function parseArgs(argv, usage, extra) {
  const o = { url: null, chromium: process.env.CHROMIUM || '/usr/bin/chromium', timeoutSec: 25 };
  const args = argv.slice();
  while (args.length) {
    const a = args.shift();
    if (a === '--chromium') o.chromium = args.shift();
    else if (a === '--timeout') o.timeoutSec = Number(args.shift());
    else if (extra && extra.includes(a)) o[a.slice(2)] = args.shift();
    else if (!o.url) o.url = a;
    else { console.error('unexpected argument ' + a); process.exit(2); }
  }
  if (!o.url) { console.error('usage: ' + usage); process.exit(2); }
  return o;
}

function launch(opts) {
  const timeoutSec = opts.timeoutSec || 25;
  const t0 = Date.now();
  const stamp = () => ((Date.now() - t0) / 1000).toFixed(2) + 's';
  const say = (line) => console.log('       [' + stamp() + '] ' + line);
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'ws-interop-chromium-'));
  const diagnostics = [];
  const eventHandlers = [];
  const pending = new Map();
  let child = null;
  let finished = false;
  let nextId = 1;

  const childGone = () => !child || child.exitCode !== null || child.signalCode !== null;

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
    clearTimeout(overall);
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
    // several tabs at once: none is throttled for being in the background
    '--disable-background-timer-throttling', '--disable-renderer-backgrounding',
    '--disable-backgrounding-occluded-windows',
    // the test CA is generated at test time: the browser cannot know it
    '--ignore-certificate-errors',
    '--user-data-dir=' + profile,
    '--remote-debugging-pipe',
    'about:blank',
  ];

  const stderrLog = [];
  child = spawn(opts.chromium, flags, {
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
  child.on('error', (e) => done(1, 'FAILED start ' + opts.chromium + ': ' + e.message));
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

  eventHandlers.push((m) => {
    const p = m.params || {};
    switch (m.method) {
      case 'Network.webSocketFrameError':
        diagnostics.push('webSocketFrameError: ' + p.errorMessage);
        say('browser WebSocket frame error: ' + p.errorMessage);
        break;
      case 'Network.webSocketHandshakeResponseReceived':
        if (!opts.quiet) {
          say('handshake response: ' + p.response.status + ' ' + p.response.statusText + ' ' +
              JSON.stringify(p.response.headers));
        }
        break;
      case 'Network.responseReceived':
        if (p.type === 'Document' && p.response && p.response.status >= 400) {
          done(1, 'FAILED loading ' + p.response.url + ': HTTP ' + p.response.status + ' ' +
               p.response.statusText);
        }
        break;
      case 'Network.webSocketClosed':
        if (!opts.quiet) say('browser: WebSocket closed');
        break;
      case 'Runtime.exceptionThrown':
        diagnostics.push('exception: ' + JSON.stringify(p.exceptionDetails && p.exceptionDetails.text) +
                         ' ' + JSON.stringify(p.exceptionDetails && p.exceptionDetails.exception &&
                                              p.exceptionDetails.exception.description));
        say('page exception: ' + diagnostics[diagnostics.length - 1]);
        break;
      case 'Log.entryAdded':
        if (p.entry && (p.entry.level === 'error' || p.entry.level === 'warning')) {
          say('browser log ' + p.entry.level + ': ' + p.entry.text + (p.entry.url ? ' (' + p.entry.url + ')' : ''));
        }
        break;
      default:
    }
  });

  let firstPageTaken = false;
  // A tab (the browser's initial about:blank the first time, a new target
  // after that) with Runtime, Log, Network and Page enabled, navigated to
  // url; returns its session id once the page's load event fired (or 10 s
  // passed).
  async function openPage(url) {
    let targetId = null;
    if (!firstPageTaken) {
      firstPageTaken = true;
      const { targetInfos } = await cdp('Target.getTargets');
      const page = targetInfos.find((t) => t.type === 'page');
      if (page) targetId = page.targetId;
    }
    if (!targetId) targetId = (await cdp('Target.createTarget', { url: 'about:blank' })).targetId;
    const { sessionId } = await cdp('Target.attachToTarget', { targetId, flatten: true });
    for (const domain of ['Runtime', 'Log', 'Network', 'Page']) await cdp(domain + '.enable', {}, sessionId);
    let loaded;
    const load = new Promise((resolve) => { loaded = resolve; });
    eventHandlers.push((m) => { if (m.sessionId === sessionId && m.method === 'Page.loadEventFired') loaded(); });
    const nav = await cdp('Page.navigate', { url }, sessionId);
    if (nav.errorText) throw new Error('navigate to ' + url + ': ' + nav.errorText);
    const t = setTimeout(loaded, 10000);
    await load;
    clearTimeout(t);
    say('navigated to ' + url);
    return sessionId;
  }

  // The value of a page expression (promises awaited); throws on an
  // exception in the page.
  async function evaluate(sessionId, expression) {
    const r = await cdp('Runtime.evaluate', { expression, returnByValue: true, awaitPromise: true },
                        sessionId);
    if (r.exceptionDetails) {
      throw new Error('evaluating ' + expression + ': ' +
                      (r.exceptionDetails.exception ? r.exceptionDetails.exception.description
                                                    : r.exceptionDetails.text));
    }
    return r.result ? r.result.value : undefined;
  }

  // Polls expression every 100 ms until its value is truthy and returns
  // that value; throws "timeout waiting for <what>" after ms.
  async function waitFor(sessionId, expression, what, ms) {
    const deadline = Date.now() + (ms || 5000);
    for (;;) {
      const v = await evaluate(sessionId, expression);
      if (v) return v;
      if (Date.now() >= deadline) throw new Error('timeout waiting for ' + what);
      await sleep(100);
    }
  }

  async function version() {
    const v = await cdp('Browser.getVersion');
    console.log('       ' + v.product + ' (' + v.userAgent + ')');
    await cdp('Security.setIgnoreCertificateErrors', { ignore: true });
    return v;
  }

  return { cdp, done, stamp, say, diagnostics, onEvent: (h) => eventHandlers.push(h),
           openPage, evaluate, waitFor, version };
}

module.exports = { launch, parseArgs, sleep };
