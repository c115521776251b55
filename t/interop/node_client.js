#!/usr/bin/env node
// Interop check of mod_websocket with the Node `ws` library (pinned in
// package.json; installed into t/interop/node_modules by
// scripts/install-deps with `npm ci`).
//
//   node t/interop/node_client.js URL [--cafile FILE | --insecure]
//                                     [--subprotocol NAME] [--invalid-utf8]
//                                     [--too-big URL_WITH_LIMIT_1000]
//                                     [--deflate MODE]
//                                     [--expect-extension TEXT]
//
// URL is ws://host:port/echo or wss://host:port/echo (the echo plugin).
// For wss:// pass --cafile with the CA that signed the server certificate
// (Apache::Test generates one: t/conf/ssl/ca/asf/certs/ca.crt) or
// --insecure to skip verification.
//
// `ws` is strict about what a server sends: a masked server frame, a RSV
// bit without a negotiated extension, an unknown opcode, a fragmented or
// oversized control frame, a non-minimal length, invalid UTF-8 in a text
// message or close reason, or an invalid close code all make it fail the
// connection (an 'error' event, close code 1002/1007).  So every echo
// below also validates the server's framing.
//
// Checks: text (ASCII, non-ASCII), binary of 0, 125, 126, 65535, 65536
// and 1 MiB bytes, fragmented text and binary sends (fin: false ...),
// ping/pong with data, close with 4001 and a reason answered by a close
// frame carrying 4001.  With --invalid-utf8, a second connection sends a
// text message of invalid UTF-8 and expects the server's close 1007; with
// --too-big URL, a connection to URL (WebSocketMaxMessageSize 1000) sends
// 1001 bytes and expects close 1009.  Prints one line per check; exit 0 only when all
// passed.
//
// permessage-deflate (RFC 7692), --deflate MODE: "default" is ws's
// perMessageDeflate: true (offer "permessage-deflate;
// client_max_window_bits"; ws compresses messages of 1 KiB and more);
// "nct" asks for server_ and client_no_context_takeover, "w10" for 10-bit
// windows both ways, "nct-w10" for both (these three compress every
// message); "off" offers nothing.  --expect-extension TEXT checks the
// answer ("none": no extension).  With the extension, a 1 MiB
// compressible echo must take a small part of that on the wire.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const path = require('path');

let WebSocket;
try {
  WebSocket = require(path.join(__dirname, 'node_modules', 'ws'));
} catch (e) {
  console.log('FAILED load the ws package from ' + path.join(__dirname, 'node_modules') +
              ': ' + e.message + ' (run scripts/install-deps, which runs npm ci there)');
  process.exit(1);
}
const wsVersion = require(path.join(__dirname, 'node_modules', 'ws', 'package.json')).version;

const STEP_TIMEOUT = 10000;
const failures = [];

function report(ok, what, detail) {
  console.log((ok ? 'ok     ' : 'FAILED ') + what + (!ok && detail ? ': ' + detail : ''));
  if (!ok) failures.push(what);
}

function describe(data, isBinary) {
  if (data === undefined) return 'nothing';
  const buf = Buffer.from(data);
  return (isBinary ? 'binary' : 'text') + ' of ' + buf.length + ' bytes (sha1 ' +
    crypto.createHash('sha1').update(buf).digest('hex').slice(0, 12) + ')';
}

function usage() {
  console.error('usage: node_client.js ws[s]://host:port/path [--cafile FILE | --insecure]');
  process.exit(2);
}

async function main() {
  const args = process.argv.slice(2);
  const url = args.shift();
  if (!url || !/^wss?:\/\//.test(url)) usage();
  const opts = { maxPayload: 8 * 1024 * 1024, handshakeTimeout: STEP_TIMEOUT };
  let subprotocol = null, invalidUtf8 = false, tooBig = null, expectExtension = null;
  let deflate = 'default';
  while (args.length) {
    const a = args.shift();
    if (a === '--cafile') opts.ca = fs.readFileSync(args.shift());
    else if (a === '--insecure') opts.rejectUnauthorized = false;
    else if (a === '--subprotocol') subprotocol = args.shift();
    else if (a === '--invalid-utf8') invalidUtf8 = true;
    else if (a === '--too-big') tooBig = args.shift();
    else if (a === '--deflate') deflate = args.shift();
    else if (a === '--expect-extension') expectExtension = args.shift();
    else usage();
  }
  const deflateModes = {
    default: true,
    off: false,
    nct: { serverNoContextTakeover: true, clientNoContextTakeover: true, threshold: 0 },
    w10: { serverMaxWindowBits: 10, clientMaxWindowBits: 10, threshold: 0 },
    'nct-w10': { serverNoContextTakeover: true, clientNoContextTakeover: true,
                 serverMaxWindowBits: 10, clientMaxWindowBits: 10, threshold: 0 },
  };
  if (!(deflate in deflateModes)) usage();
  opts.perMessageDeflate = deflateModes[deflate];

  // ws fails the handshake itself if the server picks a subprotocol we did
  // not offer
  const ws = new WebSocket(url, subprotocol ? [subprotocol, 'other'] : [], opts);
  const inbox = [];        // messages received, not yet consumed
  let waiter = null;       // resolve function of the pending recv()
  let closed = null;       // { code, reason } once 'close' fired
  const errors = [];

  ws.on('message', (data, isBinary) => {
    inbox.push({ data, isBinary });
    if (waiter) { const w = waiter; waiter = null; w(); }
  });
  ws.on('error', (err) => {
    errors.push(err);
    console.log('       ws error event: ' + (err.code ? err.code + ' ' : '') + err.message);
    if (waiter) { const w = waiter; waiter = null; w(); }
  });
  ws.on('close', (code, reason) => {
    closed = { code, reason: reason.toString('utf8') };
    if (waiter) { const w = waiter; waiter = null; w(); }
  });

  function recv() {
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(t);
        if (inbox.length) resolve(inbox.shift());
        else reject(new Error(closed ? 'connection closed (code ' + closed.code + ' "' +
                                         closed.reason + '")'
                                     : errors.length ? errors[errors.length - 1].message
                                                     : 'no message'));
      };
      const t = setTimeout(() => { waiter = null; reject(new Error('timeout')); }, STEP_TIMEOUT);
      if (inbox.length || closed || errors.length) done();
      else waiter = done;
    });
  }

  function sendAsync(data, options) {
    return new Promise((resolve, reject) => {
      ws.send(data, options || {}, (err) => (err ? reject(err) : resolve()));
    });
  }

  // wait for the handshake
  try {
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
      ws.once('unexpected-response', (req, res) =>
        reject(new Error('unexpected response ' + res.statusCode)));
    });
  } catch (e) {
    report(false, 'connect to ' + url, e.message);
    return;
  }
  report(true, 'connect to ' + url + ' (ws ' + wsVersion + ', --deflate ' + deflate +
         ', extensions "' + ws.extensions + '", protocol "' + ws.protocol + '")');
  if (expectExtension !== null) {
    report((ws.extensions || 'none') === expectExtension,
           'server answered Sec-WebSocket-Extensions: ' + expectExtension,
           'got "' + ws.extensions + '"');
  }
  if (subprotocol) {
    // the echo plugin picks the first subprotocol offered
    report(ws.protocol === subprotocol, 'server chose subprotocol ' + subprotocol,
           'got "' + ws.protocol + '"');
  }

  async function echo(what, payload, isBinary, fragments) {
    try {
      if (fragments) {
        for (let i = 0; i < fragments.length; i++) {
          await sendAsync(fragments[i], { binary: isBinary, fin: i === fragments.length - 1 });
        }
      } else {
        await sendAsync(payload, { binary: isBinary });
      }
      const m = await recv();
      const want = Buffer.from(payload);
      const ok = m.isBinary === isBinary && Buffer.from(m.data).equals(want);
      report(ok, what, 'sent ' + describe(want, isBinary) + ', got ' +
             describe(m.data, m.isBinary));
    } catch (e) {
      report(false, what, e.message);
    }
  }

  await echo('text echo', 'Hello, mod_websocket', false);
  await echo('empty text echo', '', false);
  await echo('non-ASCII text echo',
             'h\u00e9llo w\u00f6rld \u041f\u0440\u0438\u0432\u0435\u0442 \u4f60\u597d \u{1F600} \u20ac',
             false);
  for (const n of [0, 125, 126, 65535, 65536, 1024 * 1024]) {
    await echo('binary echo of ' + n + ' bytes', crypto.randomBytes(n), true);
  }
  let big = '';
  for (let i = 0; i < 70000; i++) big += String.fromCharCode(0x20 + (i * 7) % 95);
  big += '\u00e9\u{1F600}';
  await echo('text echo of ' + Buffer.byteLength(big) + ' bytes', big, false);
  // 9 UTF-8 bytes per repetition: a server that fragments its messages
  // (WebSocketFragmentSize) cuts inside multi-byte sequences
  await echo('text echo of 4,500 bytes of 2/3/4-byte UTF-8 sequences',
             '\u00e9\u20ac\u{1F600}'.repeat(500), false);

  // one message in several frames: fin: false ... fin: true.  A fragment
  // boundary inside a UTF-8 sequence is legal (only the whole message must
  // be valid UTF-8): split the bytes of "\u00e9" and of an emoji.
  const t = Buffer.from('frag-one \u00e9 frag-two \u{1F600} frag-three', 'utf8');
  const cut1 = t.indexOf(0xc3) + 1, cut2 = t.indexOf(0xf0) + 2;
  await echo('fragmented text (4 frames, cuts inside UTF-8 sequences)', t.toString('utf8'), false,
             [t.subarray(0, cut1), t.subarray(cut1, cut2), Buffer.alloc(0), t.subarray(cut2)]);
  const parts = [crypto.randomBytes(1000), Buffer.alloc(0), crypto.randomBytes(70000),
                 crypto.randomBytes(3)];
  await echo('fragmented binary (4 frames)', Buffer.concat(parts), true, parts);
  await echo('text echo after fragments', 'still here', false);

  if (ws.extensions) {
    // 1 MiB of compressible text: its echo takes a small part of that on
    // the wire (bytes the socket read; TLS records included on wss://)
    let json = '';
    for (let i = 0; json.length < 1024 * 1024; i++) json += '{"id":' + i + ',"name":"user' + (i % 50) + '","ok":true},';
    json = json.slice(0, 1024 * 1024);
    const before = ws._socket.bytesRead;
    await echo('1 MiB compressible text echo', json, false);
    const got = ws._socket.bytesRead - before;
    console.log('       1 MiB echo: ' + got + ' bytes on the wire from the server');
    report(got > 0 && got < 200 * 1024, '1 MiB echo came compressed', got + ' bytes on the wire');
  }

  // ping -> pong with the same data
  for (const pdata of [Buffer.from('ping-data-\x00\xff', 'latin1'), Buffer.alloc(0)]) {
    const what = (pdata.length ? 'ping' : 'empty ping') + ' answered by pong with the same data';
    try {
      const pong = await new Promise((resolve, reject) => {
        const tm = setTimeout(() => reject(new Error('timeout')), STEP_TIMEOUT);
        ws.once('pong', (d) => { clearTimeout(tm); resolve(d); });
        ws.ping(pdata);
      });
      report(Buffer.from(pong).equals(pdata), what,
             'pong data ' + Buffer.from(pong).toString('hex') + ' != ' + pdata.toString('hex'));
    } catch (e) {
      report(false, what, e.message);
    }
  }

  report(errors.length === 0, 'no protocol errors before the close',
         errors.map((e) => (e.code || '') + ' ' + e.message).join('; '));

  // closing handshake started by the client
  const reason = 'client done \u00e9';
  const t0 = Date.now();
  try {
    await new Promise((resolve, reject) => {
      const tm = setTimeout(() => reject(new Error('timeout waiting for close')), STEP_TIMEOUT);
      if (closed) { clearTimeout(tm); resolve(); return; }
      ws.once('close', () => { clearTimeout(tm); resolve(); });
      ws.close(4001, reason);
    });
  } catch (e) {
    report(false, 'closing handshake', e.message);
    ws.terminate();
    return;
  }
  console.log('       close event: code ' + closed.code + ', reason ' + JSON.stringify(closed.reason) +
              ', after ' + (Date.now() - t0) + ' ms');
  // ws reports 1005 when the close frame had no code, 1006 when no close
  // frame came at all
  report(closed.code === 4001, "server's close frame carries code 4001", 'got ' + closed.code);
  report(closed.reason === '' || closed.reason === reason, "server's close reason is empty or ours",
         'got ' + JSON.stringify(closed.reason));
  report(errors.length === 0, 'no protocol errors at all',
         errors.map((e) => (e.code || '') + ' ' + e.message).join('; '));

  // error paths: the server closes with the right code, in a close frame
  // that `ws` accepts
  if (invalidUtf8) {
    // ws does not validate what it sends: a text frame of invalid UTF-8
    await expectClose(url, opts, 'invalid UTF-8 text (c3 28 ff)', Buffer.from([0x61, 0xc3, 0x28, 0xff]),
                      false, 1007);
  }
  if (tooBig) {
    await expectClose(tooBig, opts, 'binary of 1001 bytes over WebSocketMaxMessageSize 1000',
                      crypto.randomBytes(1001), true, 1009);
  }
}

// Connect to u, send data, expect no message but a close frame with code.
async function expectClose(u, opts, what, data, binary, code) {
  const name = what + ' -> close ' + code;
  try {
    const r = await new Promise((resolve, reject) => {
      const c = new WebSocket(u, opts);
      const errs = [];
      const msgs = [];
      const tm = setTimeout(() => { c.terminate(); reject(new Error('timeout')); }, STEP_TIMEOUT);
      c.on('open', () => c.send(data, { binary }));
      c.on('message', (d) => msgs.push(d));
      c.on('error', (e) => errs.push((e.code ? e.code + ' ' : '') + e.message));
      c.on('close', (cc, reason) => {
        clearTimeout(tm);
        resolve({ code: cc, reason: reason.toString('utf8'), errs, msgs });
      });
    });
    console.log('       ' + what + ': close code ' + r.code + ' reason ' + JSON.stringify(r.reason) +
                (r.errs.length ? ', ws errors: ' + r.errs.join('; ') : ''));
    report(r.code === code && r.errs.length === 0 && r.msgs.length === 0, name,
           'close code ' + r.code + ' reason ' + JSON.stringify(r.reason) +
           (r.msgs.length ? ', ' + r.msgs.length + ' message(s) echoed' : '') +
           (r.errs.length ? ', ws errors: ' + r.errs.join('; ') : ''));
  } catch (e) {
    report(false, name, e.message);
  }
}

const overall = setTimeout(() => {
  report(false, 'run to completion', 'overall timeout of 25 s');
  console.log(failures.length + ' check(s) FAILED: ' + failures.join('; '));
  process.exit(1);
}, 25000);

main().then(() => {
  clearTimeout(overall);
  if (failures.length) {
    console.log(failures.length + ' check(s) FAILED: ' + failures.join('; '));
    process.exit(1);
  }
  console.log('all checks passed');
  process.exit(0);
}, (e) => {
  clearTimeout(overall);
  report(false, 'run to completion', e && e.stack);
  process.exit(1);
});
