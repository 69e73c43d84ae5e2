import { setTimeout as sleep } from 'node:timers/promises';
import { type Command, InvalidArgumentError } from 'commander';
import { loadConfig } from '../../config/load.js';
import { collectSnapshot } from '../../view/collect.js';
import {
  CanaryTally,
  RATE_WINDOW_MS,
  RateWindow,
  type ReleaseRate,
  ratesBetween,
} from '../../view/rates.js';
import { renderFrame } from '../../view/screen.js';
import type { ViewSnapshot } from '../../view/snapshot.js';
import { addRootOptions, configSources, integer } from '../options.js';

/** The terminal's alternate screen, cursor hidden; and back. */
const ENTER = '\x1b[?1049h\x1b[?25l';
const LEAVE = '\x1b[?25h\x1b[?1049l';

function interval(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0.2 || n > 60) {
    throw new InvalidArgumentError('expected seconds between 0.2 and 60');
  }
  return n;
}

function looks(value: string): number {
  const n = integer(value);
  if (n < 1) throw new InvalidArgumentError('expected a whole number of at least 1');
  return n;
}

/**
 * Registers `prefork top`: the masters of an app root, redrawn every `--interval` seconds
 * (docs/live-view.md). On a terminal it takes the alternate screen and the keys q (quit) and
 * p or space (pause); otherwise it prints each look as plain text, one after another.
 */
export function registerTop(program: Command): void {
  const command = program
    .command('top')
    .description('watch the generations of an app root live: workers, traffic, drains, deploys')
    .option('--interval <seconds>', 'time between looks (default: 1)', interval, 1)
    .option('-n, --count <n>', 'stop after this many looks (default: until q or Ctrl-C)', looks);
  addRootOptions(command);
  command.action(async (options: Record<string, unknown>) => {
    const config = loadConfig(configSources(options));
    const count = options.count as number | undefined;
    const everyMs = (options.interval as number) * 1000;
    const tty = process.stdout.isTTY === true;
    const color = tty && process.env.NO_COLOR === undefined && process.env.TERM !== 'dumb';
    const keys = tty && process.stdin.isTTY === true;
    const stop = new AbortController();
    let paused = false;
    let last: { snapshot: ViewSnapshot; rates: ReleaseRate[]; lines: string[] } | undefined;
    const tally = new CanaryTally();
    const rateWindow = new RateWindow(Math.max(RATE_WINDOW_MS, 2 * everyMs));

    const draw = (lines: string[]) => {
      if (tty) {
        // A terminal that tells no size (0: a bare pseudo-terminal) gets every line, 80 wide.
        const rows = process.stdout.rows || lines.length;
        process.stdout.write(
          `\x1b[H${lines
            .slice(0, rows)
            .map((l) => `${l}\x1b[K`)
            .join('\n')}\x1b[J`,
        );
      } else {
        process.stdout.write(`${lines.join('\n')}\n\n`);
      }
    };
    const frame = (snapshot: ViewSnapshot, rates: ReleaseRate[]) =>
      renderFrame({
        snapshot,
        rates,
        canary: tally.sides(),
        width: tty ? process.stdout.columns || 80 : Number.POSITIVE_INFINITY,
        color,
        paused,
        keys: keys ? 'q quit, p pause' : '',
      });

    const onKey = (data: Buffer) => {
      const key = data.toString();
      if (key === 'q' || key === '\x03' || key === '\x1b') stop.abort();
      if ((key === 'p' || key === ' ') && last !== undefined) {
        paused = !paused;
        last.lines = frame(last.snapshot, last.rates);
        draw(last.lines);
      }
    };
    const onResize = () => {
      if (last !== undefined) draw(frame(last.snapshot, last.rates));
    };
    const onSignal = () => stop.abort();
    // A reader that went away (`prefork top | head`) ends the watch, quietly.
    const onOutputError = (error: NodeJS.ErrnoException) => {
      if (error.code !== 'EPIPE') throw error;
      stop.abort();
    };
    process.stdout.on('error', onOutputError);
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    if (tty) {
      process.stdout.write(ENTER);
      process.stdout.on('resize', onResize);
    }
    if (keys) {
      process.stdin.setRawMode(true);
      process.stdin.resume();
      process.stdin.on('data', onKey);
    }
    try {
      for (let shown = 0; !stop.signal.aborted && (count === undefined || shown < count); ) {
        if (!paused) {
          const snapshot = await collectSnapshot(config.root, config.pid);
          // The canary's tally adds look by look; the rates shown span the window.
          tally.add(snapshot, ratesBetween(last?.snapshot, snapshot));
          const rates = rateWindow.push(snapshot);
          const lines = frame(snapshot, rates);
          last = { snapshot, rates, lines };
          draw(lines);
          shown += 1;
          if (count !== undefined && shown >= count) break;
        }
        await sleep(everyMs, undefined, { signal: stop.signal }).catch(() => undefined);
      }
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      process.stdout.off('error', onOutputError);
      if (keys) {
        process.stdin.off('data', onKey);
        process.stdin.setRawMode(false);
        process.stdin.pause();
      }
      if (tty) {
        process.stdout.off('resize', onResize);
        process.stdout.write(LEAVE);
        // What was on screen last stays readable after the alternate screen is left.
        if (last !== undefined) process.stdout.write(`${last.lines.join('\n')}\n`);
      }
    }
  });
}
