import pino from 'pino';

/** How a deploy or rollback tells what it is doing: task list, plain lines, or JSON events. */
export interface Reporter {
  /** Runs one step, reporting its start, its end and its duration. */
  step<T>(id: string, title: string, run: () => Promise<T>): Promise<T>;
  /** A line of information outside the steps. */
  info(message: string, fields?: Record<string, unknown>): void;
  /** Whether `info` may be called while a step runs (not under a task list, which redraws). */
  live: boolean;
}

function elapsed(start: number): number {
  return Date.now() - start;
}

/** `--json`: one pino event per line on stdout (`event`, `step`, `status`, `ms`). */
function jsonReporter(command: string): Reporter {
  const logger = pino({ base: { command } }, pino.destination({ dest: 1, sync: true }));
  return {
    live: true,
    async step(id, title, run) {
      const start = Date.now();
      logger.info({ event: 'step', step: id, status: 'start' }, title);
      try {
        const value = await run();
        logger.info({ event: 'step', step: id, status: 'done', ms: elapsed(start) }, title);
        return value;
      } catch (error) {
        logger.error(
          {
            event: 'step',
            step: id,
            status: 'failed',
            ms: elapsed(start),
            error: (error as Error).message,
          },
          title,
        );
        throw error;
      }
    },
    info(message, fields) {
      logger.info({ event: 'info', ...fields }, message);
    },
  };
}

/** No TTY (CI): plain timestamped lines, no colour, no cursor movement. */
function plainReporter(command: string): Reporter {
  const line = (text: string) =>
    process.stdout.write(`${new Date().toISOString()} ${command}: ${text}\n`);
  return {
    live: true,
    async step(_id, title, run) {
      const start = Date.now();
      line(`${title} ...`);
      try {
        const value = await run();
        line(`${title}: done (${elapsed(start)} ms)`);
        return value;
      } catch (error) {
        line(`${title}: FAILED after ${elapsed(start)} ms: ${(error as Error).message}`);
        throw error;
      }
    },
    info(message) {
      line(message);
    },
  };
}

/** A terminal: a listr2 task list, one task per step. */
async function taskListReporter(): Promise<Reporter> {
  const { Listr } = await import('listr2');
  return {
    live: false,
    async step(_id, title, run) {
      let value: unknown;
      const start = Date.now();
      await new Listr(
        [
          {
            title,
            task: async (_ctx, task) => {
              value = await run();
              task.title = `${title} (${elapsed(start)} ms)`;
            },
          },
        ],
        { exitOnError: true, rendererOptions: { collapseErrors: false } },
      ).run();
      return value as never;
    },
    info(message) {
      process.stdout.write(`  ${message}\n`);
    },
  };
}

/** The reporter for this run: JSON with `--json`, a task list on a TTY, plain lines otherwise. */
export async function createReporter(command: string, json: boolean): Promise<Reporter> {
  if (json) return jsonReporter(command);
  if (process.stdout.isTTY && !process.env.CI) return taskListReporter();
  return plainReporter(command);
}
