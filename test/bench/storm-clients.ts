/**
 * The WebSocket clients of `npm run bench:storm`, in a process of their own (so that their
 * reconnects do not delay the bench's latency probe): `count` chat clients of the websocket
 * example on `url`; every 100 ms it tells its parent how many are on each release and the
 * goodbyes so far.
 */
import { startChatClients } from '../helpers/long-lived-clients.js';

const [url, count] = process.argv.slice(2);
const clients = await startChatClients(url as string, Number(count));
const report = () =>
  process.connected &&
  process.send?.({
    onRelease: clients.onRelease(),
    goodbyes: clients.goodbyes.times,
    errors: clients.goodbyes.errors.length,
    firstErrors: clients.goodbyes.errors.slice(0, 5),
    codes: clients.goodbyes.codes,
  });
// The parent gone between the check and the send: nothing to tell any more.
process.on('error', () => {});
report();
const timer = setInterval(report, 100);
process.on('disconnect', () => {
  clearInterval(timer);
  clients.stop();
  process.exit(0);
});
