// An Express app: the app itself is a request listener, so it is exported as is.
const express = require('express');

const app = express();
app.get('/health', (_req, res) => res.type('text').send('ok\n'));
app.get('/', (_req, res) =>
  res.json({ release: 'express', framework: 'express', pid: process.pid }),
);

module.exports = app;
