// A Hono app: export the app. It has a Web-standard fetch(request) handler, which prefork
// serves through @hono/node-server's adapter.
import { Hono } from 'hono';

const app = new Hono();
app.get('/health', (c) => c.text('ok\n'));
app.get('/', (c) => c.json({ release: 'hono', framework: 'hono', pid: process.pid }));

export default app;
