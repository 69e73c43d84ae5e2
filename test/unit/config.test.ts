import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseBind } from '../../src/config/bind.js';
import { loadConfig } from '../../src/config/load.js';

describe('parseBind', () => {
  it.each([
    ['127.0.0.1:8000', { kind: 'tcp', host: '127.0.0.1', port: 8000, name: '127.0.0.1:8000' }],
    [':8080', { kind: 'tcp', host: undefined, port: 8080, name: ':8080' }],
    ['[::1]:9000', { kind: 'tcp', host: '::1', port: 9000, name: '[::1]:9000' }],
    ['localhost:0', { kind: 'tcp', host: 'localhost', port: 0, name: 'localhost:0' }],
    ['unix:/run/app.sock', { kind: 'unix', path: '/run/app.sock', name: 'unix:/run/app.sock' }],
  ])('%s', (text, expected) => {
    expect(parseBind(text)).toEqual(expected);
  });

  it.each([
    ['8000', /no port/],
    ['host:port', /"port" is not a port/],
    ['::1:80', /put an IPv6 address in brackets/],
    ['[nope]:80', /is not an IPv6 address/],
    ['unix:relative.sock', /must be absolute/],
    [':70000', /not a port 0-65535/],
  ])('refuses %s', (text, message) => {
    expect(() => parseBind(text)).toThrow(message);
  });
});

describe('loadConfig', () => {
  const root = mkdtempSync(join(tmpdir(), 'prefork-config-'));
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('layers defaults, the file and the command line, resolving paths from the root', () => {
    writeFileSync(
      join(root, 'prefork.config.json'),
      JSON.stringify({ workers: 3, timeout: 10, logFile: 'log/app.log' }),
    );
    const config = loadConfig({ root, cli: { workers: 5 } });
    expect(config.workers).toBe(5);
    expect(config.timeout).toBe(10);
    expect(config.gracefulTimeout).toBe(30);
    expect(config.logFile).toBe(join(root, 'log/app.log'));
    expect(config.pid).toBe(join(root, 'prefork.pid'));
    expect(config.configFile).toBe(join(root, 'prefork.config.json'));
  });

  it('names every bad key and what it allows', () => {
    writeFileSync(
      join(root, 'bad.json'),
      JSON.stringify({ workers: -1, logLevel: 'loud', colour: true }),
    );
    expect(() => loadConfig({ root, configFile: 'bad.json', cli: {} })).toThrow(
      /"workers": Invalid value: Expected >=1 but received -1; "logLevel": Invalid type: Expected \("fatal" \|.*; unknown key "colour"/,
    );
  });

  it('takes the container init settings: init unset means "when PID 1", stopMode graceful', () => {
    writeFileSync(join(root, 'init.json'), JSON.stringify({ init: true, stopMode: 'quick' }));
    expect(loadConfig({ root, cli: {} })).toMatchObject({ init: undefined, stopMode: 'graceful' });
    expect(loadConfig({ root, configFile: 'init.json', cli: {} })).toMatchObject({
      init: true,
      stopMode: 'quick',
    });
    writeFileSync(join(root, 'bad-init.json'), JSON.stringify({ init: 'yes', stopMode: 'soft' }));
    expect(() => loadConfig({ root, configFile: 'bad-init.json', cli: {} })).toThrow(
      /"init": Invalid type: Expected boolean but received "yes"; "stopMode": Invalid type: Expected \("graceful" \| "quick"\)/,
    );
  });

  it('refuses a bad bind in the file before anything starts', () => {
    writeFileSync(join(root, 'bind.json'), JSON.stringify({ bind: ['127.0.0.1'] }));
    expect(() => loadConfig({ root, configFile: 'bind.json', cli: {} })).toThrow(
      /bad bind "127\.0\.0\.1"/,
    );
  });

  it('checks the canary settings: steps, window, limits', () => {
    writeFileSync(join(root, 'canary.json'), JSON.stringify({ canarySteps: '1,25%,50%' }));
    const config = loadConfig({ root, configFile: 'canary.json', cli: { canaryWindow: 10 } });
    expect(config).toMatchObject({
      canarySteps: '1,25%,50%',
      canaryWindow: 10,
      canaryMaxErrorRate: 1,
      canaryMaxP99Ratio: 1.5,
      canaryMinRequests: 100,
      retireWindow: 1,
    });
    const bad = (cli: Record<string, unknown>) => () =>
      loadConfig({ root, configFile: 'canary.json', cli });
    expect(bad({ canarySteps: '1,half' })).toThrow(
      /--canary-steps: expected worker counts or percentages of the full count, comma-separated: e\.g\. "1,50%"/,
    );
    expect(bad({ canarySteps: '1,150%' })).toThrow(/a percentage may not exceed 100%/);
    expect(bad({ canaryMaxP99Ratio: 0.5 })).toThrow(/--canary-max-p99-ratio: Invalid value/);
    expect(bad({ canaryMinRequests: 0 })).toThrow(/--canary-min-requests: Invalid value/);
    expect(bad({ retireWindow: -1 })).toThrow(/--retire-window: Invalid value/);
  });

  it('names the option for command-line values', () => {
    expect(() => loadConfig({ root, configFile: 'bind.json', cli: { workers: 0 } })).toThrow(
      /--workers: Invalid value: Expected >=1 but received 0/,
    );
  });

  it('refuses a metricsBind that is, or overlaps, an app bind, naming where it was given', () => {
    writeFileSync(
      join(root, 'metrics.json'),
      JSON.stringify({ bind: ['0.0.0.0:8000'], metricsBind: '127.0.0.1:8000' }),
    );
    expect(() => loadConfig({ root, configFile: 'metrics.json', cli: {} })).toThrow(
      /"metricsBind" in .*metrics\.json "127\.0\.0\.1:8000" is also an app bind \(0\.0\.0\.0:8000\)/,
    );
    const cli = (bind: string, metricsBind: string) =>
      loadConfig({ root, configFile: 'bind.json', cli: { bind: [bind], metricsBind } });
    expect(() => cli('unix:/run/a.sock', 'unix:/run/a.sock')).toThrow(/--metrics-bind/);
    expect(() => cli('[::1]:80', ':80')).toThrow(/is also an app bind/);
    expect(cli('127.0.0.1:8000', '127.0.0.1:9464').metricsBind).toBe('127.0.0.1:9464');
    expect(cli('127.0.0.1:8000', '127.0.0.2:8000').metricsBind).toBe('127.0.0.2:8000');
    expect(cli('127.0.0.1:0', '127.0.0.1:0').metricsBind).toBe('127.0.0.1:0');
  });
});
