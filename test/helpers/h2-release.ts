/**
 * An h2c release (`http2.createServer()`, prior knowledge) written against Node's core HTTP/2
 * API: it answers `stream` events itself, with no `request` listener, so nothing prefork does
 * may turn Node's compatibility layer on under it. `/health` answers 200; anything else
 * `{ release, pid }`, after `delayMs` (none with 0).
 */
export function h2cRelease(name: string, delayMs = 2): Record<string, string | object> {
  const answer =
    delayMs > 0 ? `setTimeout(() => stream.end(body), ${delayMs});` : 'stream.end(body);';
  return {
    'package.json': { name: `test-${name}`, version: '1.0.0', main: 'index.js' },
    'index.js': `const http2 = require('node:http2');
const server = http2.createServer();
server.on('stream', (stream, headers) => {
  if (headers[':path'] === '/health') return stream.respond({ ':status': 200 }, { endStream: true });
  stream.respond({ ':status': 200, 'content-type': 'application/json' });
  const body = JSON.stringify({ release: ${JSON.stringify(name)}, pid: process.pid });
  ${answer}
});
module.exports = server;
`,
  };
}
