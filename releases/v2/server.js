// Example release v2: an ES module whose default export is an async factory returning an
// unlistened http.Server (the app contract's third form, for apps that connect first).
import { readFileSync } from 'node:fs';
import http from 'node:http';

const { version } = JSON.parse(readFileSync(new URL('./package.json', import.meta.url), 'utf8'));

export default async function createServer() {
  // An app would connect to its database here; prefork waits for this before "ready".
  await new Promise((resolve) => setTimeout(resolve, 50));
  return http.createServer((req, res) => {
    const url = new URL(req.url, 'http://localhost');
    const body = () =>
      JSON.stringify({ release: 'v2', version, pid: process.pid, path: url.pathname });
    if (url.pathname === '/health') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok\n');
    } else if (url.pathname === '/slow') {
      const ms = Math.min(Number(url.searchParams.get('ms') ?? 1000), 60_000);
      setTimeout(() => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(body());
      }, ms);
    } else {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(body());
    }
  });
}

// Awaited by prefork when this worker drains, after its last request finished.
export async function close() {}
