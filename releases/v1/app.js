// Example release v1: a CommonJS request listener (the app contract's first form).
// GET /health → 200; GET /slow?ms=N → answers after N ms; anything else → who answered.
const { version } = require('./package.json');

let closed = false;

module.exports = function app(req, res) {
  const url = new URL(req.url, 'http://localhost');
  const body = () =>
    JSON.stringify({ release: 'v1', version, pid: process.pid, path: url.pathname });
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
};

// Awaited by prefork when this worker drains, after its last request finished.
module.exports.close = async () => {
  closed = true;
  return closed;
};
