import { describe, expect, it } from 'vitest';
import { parseWrk } from '../bench/load.js';

describe("the bench's reading of wrk's report", () => {
  it('takes percentiles from the distribution, not from a "50%" inside a stdev column', () => {
    const report = `Running 5s test @ http://127.0.0.1:8000/
  2 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.13ms    1.70ms  1.20s    77.40%
    Req/Sec    10.55k     2.69k   14.72k    80.50%
  Latency Distribution
     50%  874.00us
     75%    2.86ms
     90%    4.08ms
     99%    8.27ms
  42109 requests in 2.01s, 3.86MB read
  Socket errors: connect 0, read 12, write 0, timeout 3
  Non-2xx or 3xx responses: 5
Requests/sec:  20965.79
`;
    expect(parseWrk(report)).toEqual({
      tool: 'wrk',
      requests: 42109,
      rps: 20966,
      failed: 20,
      failedByKind: { read: 12, timeout: 3, 'non-2xx': 5 },
      p50: 0.87,
      p99: 8.27,
      max: 1200,
    });
  });
});
