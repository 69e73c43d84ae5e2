// A grpc-js server as a prefork release: exported unbound (no bindAsync), prefork hands it the
// connections its workers accept on the master's sockets (grpc-js's connection injector) and
// drains it like any HTTP/2 server, by GOAWAY. The standard health service (grpc.health.v1)
// is what prefork's health checks ask.
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import { HealthImplementation } from 'grpc-health-check';

const here = dirname(fileURLToPath(import.meta.url));
const release = basename(here);
const definition = protoLoader.loadSync(join(here, 'echo.proto'));
const { echo } = grpc.loadPackageDefinition(definition);

const COUNT_EVERY_MS = 5;

const server = new grpc.Server();
server.addService(echo.Echo.service, {
  Say: (call, callback) => callback(null, { text: call.request.text, release, pid: process.pid }),
  Count: (call) => {
    let sent = 0;
    const timer = setInterval(() => {
      if (call.cancelled) return clearInterval(timer);
      call.write({ text: String(sent), release, pid: process.pid });
      sent += 1;
      if (sent >= call.request.n) {
        clearInterval(timer);
        call.end();
      }
    }, COUNT_EVERY_MS);
  },
});
const health = new HealthImplementation({ '': 'SERVING', 'echo.Echo': 'SERVING' });
health.addToServer(server);

export default server;

/** prefork's drain hook: health checks of this worker say it is going away. */
export function drain() {
  health.setStatus('', 'NOT_SERVING');
  health.setStatus('echo.Echo', 'NOT_SERVING');
}
