// A Koa app: export the app; prefork serves app.callback().
import Koa from 'koa';

const app = new Koa();
app.use(async (ctx) => {
  if (ctx.path === '/health') {
    ctx.body = 'ok\n';
    return;
  }
  ctx.body = { release: 'koa', framework: 'koa', pid: process.pid };
});

export default app;
