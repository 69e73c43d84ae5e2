import type net from 'node:net';
import type { WorkerHealthReply, WorkerHealthRequest } from '../protocol/index.js';
import { PrivateEndpoint } from './private-endpoint.js';

/**
 * Answers a master's {@link WorkerHealthRequest}: GETs the path from this worker's own app
 * through a {@link PrivateEndpoint} opened for the one request, so the answer is this
 * release's even while another generation accepts on the same listen sockets.
 */
export async function checkSelf(
  server: net.Server,
  request: WorkerHealthRequest,
): Promise<WorkerHealthReply> {
  const reply = (status: number | null, error: string | null): WorkerHealthReply => ({
    type: 'health',
    id: request.id,
    status,
    error,
  });
  let endpoint: PrivateEndpoint | undefined;
  try {
    endpoint = await PrivateEndpoint.open(server);
    return reply(await endpoint.get(request.path, 'prefork-health', request.timeoutMs), null);
  } catch (error) {
    return reply(null, (error as Error).message);
  } finally {
    endpoint?.close();
  }
}
