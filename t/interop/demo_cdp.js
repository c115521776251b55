#!/usr/bin/env node
// Drives the demo page (demo/index.html) in headless Chromium over the
// DevTools protocol (t/interop/cdp.js), the way a person would: it types
// into the page's inputs, clicks its buttons and reads what the page shows
// (the data-* attributes and log lines index.html documents).
//
//   node t/interop/demo_cdp.js PAGE_URL [--https-url URL]
//                              [--chromium PATH] [--timeout SECONDS]
//
// Checks: every panel opens with the right subprotocol and ws://; the echo
// panel echoes text and binary; Close shows "closed 1000" and Reconnect
// opens again; the counter increases and Reset starts it again; the proxy
// panel gets its bytes back through the TCP echo; the calculator (/exec,
// a process per WebSocket) answers and "quit" closes it with 1000; chat
// between two tabs: B sees A join and A's message, A sees B's reply, B
// sees A leave.  With
// --https-url, the page over https:// uses wss:// and echoes.
//
// Broadcast reaches only the connections of the same httpd child, and the
// test server runs several: A's chat reconnects (and every other try B's
// too) until B sees A's join notice, at most CHAT_TRIES times.
//
// Prints "ok     ..." / "FAILED ..." per check and "all checks passed" at
// the end; exits 0 only then.
'use strict';

const { launch, parseArgs, sleep } = require('./cdp');

const CHAT_TRIES = 16;
const opts = parseArgs(process.argv.slice(2),
  'demo_cdp.js PAGE_URL [--https-url URL] [--chromium PATH] [--timeout SECONDS]', ['--https-url']);
const b = launch(Object.assign({ quiet: true }, opts));

let checks = 0, failed = 0;
function check(name, ok, detail) {
  checks++;
  if (!ok) failed++;
  console.log((ok ? 'ok     ' : 'FAILED ') + name + (ok || detail === undefined ? '' : ': ' + detail));
  return ok;
}

// --- the page, as a user sees it
const js = JSON.stringify;
const panelAttr = (s, panel, attr) => b.evaluate(s, `document.getElementById(${js(panel)}).dataset[${js(attr)}]`);
const text = (s, id) => b.evaluate(s, `document.getElementById(${js(id)}).textContent`);
const click = (s, id) => b.evaluate(s, `document.getElementById(${js(id)}).click()`);
const fill = (s, id, value) => b.evaluate(s, `document.getElementById(${js(id)}).value = ${js(value)}`);
// the texts of a log's lines of one class ("in", "out", "note")
const logLines = (s, panel, cls) => b.evaluate(s,
  `Array.from(document.querySelectorAll("#${panel}-log li.${cls}"), (li) => li.textContent)`);
const waitState = (s, panel, state, ms) => b.waitFor(s,
  `document.getElementById(${js(panel)}).dataset.state === ${js(state)}`, panel + ' ' + state, ms);
// wait until a line of class cls in panel's log satisfies the JS predicate
// source pred (over a variable t), return that line
const waitLine = (s, panel, cls, pred, what, ms) => b.waitFor(s,
  `Array.from(document.querySelectorAll("#${panel}-log li.${cls}"), (li) => li.textContent)` +
  `.find((t) => ${pred})`, what, ms);
// chat notices "* <address> joined" / "... left": how many, and waiting
// for more than n
const notes = async (s, what) => (await logLines(s, 'chat', 'note')).filter((t) => t.endsWith(' ' + what)).length;
const waitNotes = (s, what, n, desc) => b.waitFor(s, `Array.from(document.querySelectorAll("#chat-log li.note"))
  .filter((li) => li.textContent.endsWith(${js(' ' + what)})).length > ${n}`, desc);

async function attempt(name, fn) {
  try {
    await fn();
  } catch (e) {
    check(name, false, e.message);
  }
}

async function panelsOpen(s, scheme) {
  await b.waitFor(s, `["echo", "chat", "increment", "proxy"].every(
    (p) => document.getElementById(p).dataset.state !== "connecting")`, 'all panels to connect', 8000);
  const want = { echo: '', chat: '', increment: 'dumb-increment-protocol', proxy: 'binary' };
  for (const p of Object.keys(want)) {
    const state = await panelAttr(s, p, 'state');
    const url = await panelAttr(s, p, 'url');
    const proto = await panelAttr(s, p, 'protocol');
    const shown = (await text(s, p + '-protocol')) + ' / ' + (await text(s, p + '-url'));
    check(`${p} panel open on ${url}, protocol "${proto}"`,
          state === 'open' && url.startsWith(scheme + '://') && url.endsWith('/' + p) &&
          proto === want[p] && shown === (want[p] || 'none') + ' / ' + url,
          `state ${state} (${await text(s, p + '-state')}), shown "${shown}", want ${scheme}:// and "${want[p]}"`);
  }
}

async function echoChecks(s, label) {
  await attempt(label + 'echo: text comes back', async () => {
    const msg = 'Hello, demo page \u00e9\u20ac\ud83d\ude00 ' + Date.now();
    await fill(s, 'echo-input', msg);
    await click(s, 'echo-send');
    await waitLine(s, 'echo', 'in', `t === ${js(msg)}`, 'the echo of ' + js(msg));
    check(label + 'echo: text comes back', true);
  });
}

async function main() {
  await b.version();

  // ---- page A over http://
  const a = await b.openPage(opts.url);
  await attempt('panels open', () => panelsOpen(a, 'ws'));
  await echoChecks(a, '');
  await attempt('echo: binary comes back', async () => {
    await click(a, 'echo-binary');
    const sent = (await logLines(a, 'echo', 'out')).pop();
    const got = await waitLine(a, 'echo', 'in', 't.startsWith("binary ")', 'a binary echo');
    check('echo: binary comes back: ' + got, got === sent, 'sent ' + sent);
  });
  await attempt('echo: Close shows the close code', async () => {
    await click(a, 'echo-close');
    await waitState(a, 'echo', 'closed');
    const code = await panelAttr(a, 'echo', 'closeCode');
    const shown = await text(a, 'echo-state');
    check('echo: Close shows "' + shown + '"', code === '1000' && /^closed 1000\b/.test(shown),
          'code ' + code);
    await click(a, 'echo-reconnect');
    await waitState(a, 'echo', 'open');
    check('echo: Reconnect opens again', true);
  });
  await echoChecks(a, 'after reconnect: ');

  await attempt('counter increases and resets', async () => {
    // every value the page shows, as it shows it
    await b.evaluate(a, `window.__seen = [];
      new MutationObserver(() => window.__seen.push(Number(
        document.getElementById("increment-value").textContent)))
        .observe(document.getElementById("increment-value"), { childList: true, characterData: true, subtree: true });`);
    const before = Number(await b.waitFor(a,
      'Number(document.getElementById("increment-value").textContent) >= 10 && window.__seen.length >= 5 ' +
      '&& document.getElementById("increment-value").textContent', 'the counter to reach 10'));
    const seen = await b.evaluate(a, 'window.__seen.slice()');
    check(`counter increases (${seen.slice(-5).join(', ')})`,
          seen.every((v, i) => i === 0 || v === seen[i - 1] + 1), js(seen));
    // from the last value shown before the click on
    const mark = await b.evaluate(a, 'window.__seen.length - 1');
    await click(a, 'increment-reset');
    const after = await b.waitFor(a, `(() => { const v = window.__seen.slice(${mark});
      const i = v.findIndex((x, k) => k > 0 && x < v[k - 1]);
      return i >= 0 && v.length >= i + 3 ? v : null; })()`, 'the counter to restart');
    const i = after.findIndex((x, k) => k > 0 && x < after[k - 1]);
    check(`Reset restarts the counter (${after.slice(Math.max(0, i - 2), i + 3).join(', ')})`,
          after[i] <= 1 && after[i] < before && after[i + 1] === after[i] + 1, js(after));
  });

  await attempt('proxy: bytes come back through the TCP echo', async () => {
    const msg = 'through the TCP echo \u00e9\u20ac ' + Date.now();
    await fill(a, 'proxy-input', msg);
    await click(a, 'proxy-send');
    // TCP may cut it anywhere: the log's "in" lines joined
    await b.waitFor(a, `Array.from(document.querySelectorAll("#proxy-log li.in"), (li) => li.textContent)
      .join("").includes(${js(msg)})`, 'the echo of ' + js(msg));
    const bytes = await b.evaluate(a, `Array.from(document.querySelectorAll("#proxy-log li.in"),
      (li) => Number(li.dataset.bytes)).reduce((x, y) => x + y, 0)`);
    check(`proxy: bytes come back through the TCP echo (${bytes} bytes)`,
          bytes === Buffer.byteLength(msg), 'sent ' + Buffer.byteLength(msg));
  });

  await attempt('exec: the calculator answers', async () => {
    await waitState(a, 'exec', 'open', 8000);
    const hello = await waitLine(a, 'exec', 'in', 't.startsWith("calc (pid ")', 'the greeting');
    await fill(a, 'exec-input', '6 * 7');
    await click(a, 'exec-send');
    await waitLine(a, 'exec', 'in', 't === "6 * 7 = 42"', 'the answer to 6 * 7');
    check(`exec: the calculator answers 6 * 7 = 42 ("${hello}")`, true);
    await fill(a, 'exec-input', 'quit');
    await click(a, 'exec-send');
    await waitState(a, 'exec', 'closed');
    const code = await panelAttr(a, 'exec', 'closeCode');
    check('exec: quit ends the program: "' + (await text(a, 'exec-state')) + '"', code === '1000',
          'code ' + code);
  });

  // ---- chat between A and a second tab B
  await attempt('chat between two tabs', async () => {
    await fill(a, 'chat-name', 'alice');
    const bs = await b.openPage(opts.url);
    await waitState(bs, 'chat', 'open', 8000);
    await fill(bs, 'chat-name', 'bob');
    await waitNotes(bs, 'joined', 0, "B's own join notice");
    let together = 0;
    for (let i = 1; i <= CHAT_TRIES && !together; i++) {
      if (i % 2 === 0) {   // every other try, B tries another child too
        const own = await notes(bs, 'joined');
        await click(bs, 'chat-reconnect');
        await waitNotes(bs, 'joined', own, "B's own join notice");
      }
      const before = await notes(bs, 'joined');
      const own = await notes(a, 'joined');
      await click(a, 'chat-reconnect');
      await waitNotes(a, 'joined', own, "A's own join notice");
      // A's join notice went out to B before A got its own copy
      await sleep(300);
      if (await notes(bs, 'joined') > before) together = i;
    }
    if (!check(`chat: B sees A join (same httpd child after ${together || CHAT_TRIES} tries)`, together,
               'no two connections in the same child')) return;
    await fill(a, 'chat-input', 'hi bob');
    await click(a, 'chat-send');
    await waitLine(bs, 'chat', 'in', 't === "alice: hi bob"', "A's message in B");
    check("chat: A's message appears in B", true);
    check('chat: the input was emptied after sending', (await b.evaluate(a,
      'document.getElementById("chat-input").value')) === '');
    await waitLine(a, 'chat', 'in', 't === "alice: hi bob"', "A's message back in A");
    check('chat: and in A itself', true);
    await fill(bs, 'chat-input', 'hello alice');
    await click(bs, 'chat-send');
    await waitLine(a, 'chat', 'in', 't === "bob: hello alice"', "B's reply in A");
    check("chat: B's reply appears in A", true);
    const lefts = await notes(bs, 'left');
    await click(a, 'chat-close');
    await waitState(a, 'chat', 'closed');
    await waitNotes(bs, 'left', lefts, 'B to see A leave');
    check('chat: B sees A leave', true);
  });

  // ---- the page over https://: wss://
  if (opts['https-url']) {
    await attempt('page over https://', async () => {
      const c = await b.openPage(opts['https-url']);
      await panelsOpen(c, 'wss');
      await echoChecks(c, 'wss: ');
    });
  }

  if (b.diagnostics.length) check('no browser diagnostics', false, b.diagnostics.join('; '));
  if (failed || !checks) return b.done(1, (failed || 1) + ' check(s) FAILED');
  return b.done(0, 'all checks passed (' + checks + ' checks, ' + b.stamp() + ')');
}

main().catch((e) => b.done(1, 'FAILED ' + (e && e.stack ? e.stack : e)));
