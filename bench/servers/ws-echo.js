// bench/servers/ws-echo.js PORT [HOST]: the Node `ws` echo server of
// bench/run.  Every message goes back as it came (text as text, binary
// as binary); no permessage-deflate (ws's default), unless the
// environment has WS_ECHO_DEFLATE=1: then perMessageDeflate: true (ws's
// defaults: zlib's level and memLevel, 15-bit windows, context takeover,
// messages under 1 KiB sent uncompressed).
'use strict';
const { WebSocketServer } = require('ws');

const port = Number(process.argv[2] || 8090);
const host = process.argv[3] || '127.0.0.1';
const wss = new WebSocketServer({
    host, port, maxPayload: 64 * 1024 * 1024,
    perMessageDeflate: process.env.WS_ECHO_DEFLATE === '1',
});

wss.on('connection', (ws) => {
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
    ws.on('error', () => {});
});
wss.on('listening', () => console.log(`ws echo on ${host}:${port}`));
