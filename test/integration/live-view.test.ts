import { execFileSync, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { type Browser, chromium } from 'playwright-core';
import { afterEach, describe, expect, it } from 'vitest';
import { type AppRoot, makeAppRoot, PREFORK_BIN } from '../helpers/app-root.js';
import { startClientLoad } from '../helpers/load.js';
import { startMaster } from '../helpers/master.js';
import { freePort } from '../helpers/ports.js';
import { killAll, mastersIn, runPrefork, track, waitFor } from '../helpers/processes.js';

/** Debian's chromium (test/provision.sh installs it). */
const CHROMIUM = '/usr/bin/chromium';

let root: AppRoot;
let browser: Browser | undefined;
/** A tmux server of this test's own (`-L`), never the user's. */
const TMUX = ['-L', `prefork-top-${process.pid}`];

const tmux = (...args: string[]) =>
  execFileSync('tmux', [...TMUX, ...args], { encoding: 'utf8', timeout: 10_000 });

afterEach(async () => {
  await browser?.close();
  browser = undefined;
  spawnSync('tmux', [...TMUX, 'kill-server'], { timeout: 10_000 });
  if (root !== undefined) for (const pid of mastersIn(root.dir)) track(pid);
  killAll();
  root?.remove();
});

/** The screen of `prefork top` in the tmux pane, as text. */
const screen = () => tmux('capture-pane', '-p', '-t', 'top');

/** The figures `prefork top` shows for `release` on a screen: `[v2] 2 ready; 41.0 req/s, ...`. */
function rateOn(text: string, release: string): number | undefined {
  const match = new RegExp(`\\[${release}\\] [^;\\n]*; ([0-9.]+) req/s`).exec(text);
  return match === null ? undefined : Number(match[1]);
}

describe('a live view of a deploy', () => {
  it('prefork top in tmux and the page at / in a browser follow a deploy under load: both generations, traffic moving, the old one draining away', async () => {
    root = makeAppRoot();
    const metricsPort = await freePort();
    const master = await startMaster(root.dir, [
      'releases/v1',
      '--metrics-bind',
      `127.0.0.1:${metricsPort}`,
    ]);
    const load = startClientLoad(master.url, { connections: 4, durationSec: 120, pauseMs: 5 });

    // The terminal view: 80 columns, as over SSH, redrawn every half second.
    tmux(
      'new-session',
      '-d',
      '-s',
      'top',
      '-x',
      '80',
      '-y',
      '40',
      `${process.execPath} ${PREFORK_BIN} top --root ${root.dir} --interval 0.5`,
    );
    track(Number(tmux('display-message', '-p', '-t', 'top', '#{pid}').trim()));
    await waitFor(
      'top to show v1 serving with traffic',
      () => (rateOn(screen(), 'v1') ?? 0) > 0,
      20_000,
    );

    // The page, loaded before the deploy and never reloaded.
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox'],
    });
    const page = await browser.newPage({ viewport: { width: 1360, height: 520 } });
    const pageErrors: string[] = [];
    page.on('pageerror', (error) => pageErrors.push(error.message));
    await page.goto(`http://127.0.0.1:${metricsPort}/`);
    await page.waitForFunction('Number(document.body.dataset.looks) >= 3', undefined, {
      timeout: 20_000,
    });
    /** The last value of each series of a chart, and whether it ever had one. */
    const series = (chart: 'rate' | 'p99' | 'workers') =>
      page.evaluate((name) => {
        // The page's own record of what it charted (src/view/web/page.ts).
        type Live = Record<string, { series: Map<string, (number | null)[]> }>;
        const history = (globalThis as unknown as { preforkLive: Live }).preforkLive[name];
        if (history === undefined) throw new Error(`no chart ${name}`);
        return Object.fromEntries(
          [...history.series].map(([key, points]) => [
            key,
            { last: points.at(-1) ?? null, seen: points.some((p) => p !== null && p > 0) },
          ]),
        );
      }, chart);
    expect(Object.keys(await series('rate'))).toEqual(['v1']);

    // The deploy, with the screens top draws while it runs.
    const screens: string[] = [];
    let deploying = true;
    const watching = (async () => {
      while (deploying) {
        screens.push(screen());
        await new Promise((r) => setTimeout(r, 200));
      }
    })();
    const deployed = await runPrefork(['deploy', 'v2', '--root', root.dir, '--verify-window', '2']);
    deploying = false;
    await watching;
    expect(deployed.code, deployed.stdout + deployed.stderr).toBe(0);

    // Both generations side by side, the deploy's step named, traffic on both.
    const both = screens.filter(
      (s) => /master \d+ running \[v2\]/.test(s) && /master \d+ old \[v1\]/.test(s),
    );
    expect(both.length, screens.at(-1)).toBeGreaterThan(0);
    expect(screens.some((s) => /deploy v2 \(2\.0\.0\) from v1: step \w/.test(s))).toBe(true);
    expect(screens.some((s) => (rateOn(s, 'v2') ?? 0) > 0 && /master \d+ old \[v1\]/.test(s))).toBe(
      true,
    );
    // The old generation drains to zero: its workers shown draining, then no worker of it left.
    expect(screens.some((s) => /\[v1\] (\d+ draining|no workers)/.test(s))).toBe(true);
    await waitFor(
      'top to show v2 alone, no deploy running',
      () => {
        const s = screen();
        return !s.includes('[v1]') && (rateOn(s, 'v2') ?? 0) > 0 && s.includes('no deploy running');
      },
      20_000,
    );
    // No line wider than the terminal's 80 columns.
    for (const s of screens)
      for (const line of s.split('\n')) expect(line.length).toBeLessThanOrEqual(80);

    // The page, without a reload: v2's series appeared, v1's ended (the old master is gone).
    await waitFor(
      'the page to show v2 serving and v1 ended',
      async () => {
        const rate = await series('rate');
        return rate.v2?.seen && (rate.v2.last ?? 0) > 0 && rate.v1?.seen && rate.v1.last === null;
      },
      20_000,
    );
    const workers = await series('workers');
    expect(Object.keys(workers).some((k) => k.startsWith('v1 (master '))).toBe(true);
    expect(Object.keys(workers).some((k) => k.startsWith('v2 (master '))).toBe(true);
    expect(await page.locator('#generations tbody tr[data-release="v2"]').count()).toBe(1);
    expect(await page.locator('#generations tbody tr[data-release="v1"]').count()).toBe(0);
    expect(await page.locator('#chart-rate .u-legend').textContent()).toContain('v2');
    expect(pageErrors).toEqual([]);
    await page.screenshot({ path: process.env.PREFORK_SCREENSHOT ?? join(root.dir, 'live.png') });

    // Colours, as a terminal shows them (capture-pane -e keeps the escape codes)...
    expect(tmux('capture-pane', '-p', '-e', '-t', 'top')).toMatch(
      new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*3[1-3]m`),
    );
    // ...p pauses (the look stays, marked PAUSED), p again goes on with new looks...
    tmux('send-keys', '-t', 'top', 'p');
    await waitFor('top to pause', () => screen().includes('PAUSED'), 10_000);
    const pausedAt = /(\d\d:\d\d:\d\d)/.exec(screen())?.[1];
    tmux('send-keys', '-t', 'top', 'p');
    await waitFor(
      'top to go on',
      () => !screen().includes('PAUSED') && /(\d\d:\d\d:\d\d)/.exec(screen())?.[1] !== pausedAt,
      10_000,
    );
    // ...and q leaves it.
    tmux('send-keys', '-t', 'top', 'q');
    await waitFor(
      'top to exit on q',
      () => spawnSync('tmux', [...TMUX, 'has-session', '-t', 'top']).status !== 0,
      10_000,
    );

    const result = await load.stop();
    expect(result.failed, (result.firstErrors ?? []).join('\n')).toBe(0);
    expect(result.byRelease.v2).toBeGreaterThan(0);
  });

  it('prefork top without a terminal prints plain looks, one after another, and stops after --count', async () => {
    root = makeAppRoot();
    await startMaster(root.dir, ['releases/v1']);
    const result = await runPrefork([
      'top',
      '--root',
      root.dir,
      '--count',
      '2',
      '--interval',
      '0.2',
    ]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).not.toContain('\x1b');
    expect(result.stdout.match(/^prefork top /gm)?.length).toBe(2);
    expect(result.stdout).toMatch(/master \d+ running \[v1\] 1\.0\.0/);
    // On a terminal (a pseudo-terminal of util-linux's script) with NO_COLOR: the alternate
    // screen, and no colour.
    const esc = String.fromCharCode(27);
    const onTty = spawnSync(
      'script',
      ['-qec', `${process.execPath} ${PREFORK_BIN} top --root ${root.dir} --count 1`, '/dev/null'],
      { encoding: 'utf8', timeout: 20_000, env: { ...process.env, NO_COLOR: '1' } },
    );
    expect(onTty.status, onTty.stderr).toBe(0);
    expect(onTty.stdout).toContain(`${esc}[?1049h`);
    expect(onTty.stdout).toMatch(/master \d+ running \[v1\]/);
    expect(onTty.stdout).not.toMatch(new RegExp(`${esc}\\[[0-9;]*m`));
    const bad = await runPrefork(['top', '--root', root.dir, '--count', '0']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('expected a whole number of at least 1');
  });
});
