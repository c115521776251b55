// bench/servers/ws-broadcast.js PORT [HOST]: the Node `ws` fan-out server
// of bench/run (wsbench -F).  Every message a client sends goes to every
// connected client, the sender included -- the broadcast loop of ws's
// README -- with no permessage-deflate.
'use strict';
const { WebSocketServer, WebSocket } = require('ws');

const port = Number(process.argv[2] || 8090);
const host = process.argv[3] || '127.0.0.1';
const wss = new WebSocketServer({ host, port, maxPayload: 64 * 1024 * 1024 });

wss.on('connection', (ws) => {
    ws.on('message', (data, isBinary) => {
        wss.clients.forEach((client) => {
            if (client.readyState === WebSocket.OPEN) {
                client.send(data, { binary: isBinary });
            }
        });
    });
    ws.on('error', () => {});
});
wss.on('listening', () => console.log(`ws broadcast on ${host}:${port}`));
