// HTTP, WebSocket and server-sent events on one http.Server. When its worker drains, prefork
// calls `drain`: each WebSocket is closed with 1012 (service restart) and each event stream
// ends with a `retry:` hint, spread over the goodbye window, so clients reconnect to the new
// release a few at a time instead of all at once, and the deploy does not wait them out.
import http from 'node:http';
import { basename, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WebSocketServer } from 'ws';

const release = basename(dirname(fileURLToPath(import.meta.url)));
const streams = new Set();
/** Set once the drain began: a client that arrives after it is told goodbye at once. */
let draining = false;
const goodbye = {
  ws: (ws) => ws.close(1012, 'service restart'),
  stream: (res) => res.end('retry: 500\n\n'),
};
const server = http.createServer((req, res) => {
  if (req.url === '/health') return res.end('ok\n');
  if (req.url === '/events') {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    res.write(`data: ${JSON.stringify({ release, pid: process.pid })}\n\n`);
    if (draining) return goodbye.stream(res);
    streams.add(res);
    res.on('close', () => streams.delete(res));
    return;
  }
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ release, pid: process.pid }));
});

const wss = new WebSocketServer({ noServer: true });
server.on('upgrade', (req, socket, head) => {
  wss.handleUpgrade(req, socket, head, (ws) => {
    ws.send(JSON.stringify({ hello: release, pid: process.pid }));
    if (draining) return goodbye.ws(ws);
    // A chat of one: every message comes back, naming who answered it.
    ws.on('message', (data) => ws.send(JSON.stringify({ echo: String(data), release })));
  });
});

export default server;

/** prefork's drain hook: say goodbye to every client, spread over the window. */
export async function drain({ spread }) {
  draining = true;
  await Promise.all([spread(wss.clients, goodbye.ws), spread(streams, goodbye.stream)]);
}
