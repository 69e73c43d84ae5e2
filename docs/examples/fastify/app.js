// A Fastify app: export the instance. prefork awaits app.ready() and listens app.server on
// the inherited sockets; never call app.listen().
import Fastify from 'fastify';

const app = Fastify();
app.get('/health', async () => 'ok\n');
app.get('/', async () => ({ release: 'fastify', framework: 'fastify', pid: process.pid }));

export default app;

// Runs Fastify's onClose hooks when the worker drains, after its last request.
export async function close() {
  await app.close();
}
