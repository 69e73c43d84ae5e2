import { availableParallelism } from 'node:os';
import { z } from 'zod';

/** Log levels pino knows, least to most verbose reversed. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/**
 * Every setting, as `prefork.config.json` spells it (camelCase). Command-line options use the
 * same names in kebab-case and win over the file. Unknown keys are errors.
 */
export const configSchema = z
  .strictObject({
    bind: z.array(z.string().min(1)).min(1),
    workers: z.number().int().min(1).max(1024),
    timeout: z.number().positive().max(86_400),
    gracefulTimeout: z.number().positive().max(86_400),
    bootTimeout: z.number().positive().max(86_400),
    pid: z.string().min(1),
    logFile: z.string().min(1),
    logLevel: z.enum(LOG_LEVELS),
    daemon: z.boolean(),
    maxRequests: z.number().int().min(0),
    maxRequestsJitter: z.number().int().min(0),
    maxMemory: z.number().min(0),
    forceWinch: z.boolean(),
    user: z.string().min(1),
    group: z.string().min(1),
    healthPath: z.string().startsWith('/'),
    readyTimeout: z.number().positive().max(86_400),
    verifyWindow: z.number().min(0).max(3600),
  })
  .partial();

/** Settings as read from a file or the command line: any subset. */
export type PartialConfig = z.infer<typeof configSchema>;

/** The effective configuration of a master. */
export interface Config {
  /** Absolute app root. */
  root: string;
  /** Absolute path of the config file that was read, if any. */
  configFile: string | undefined;
  bind: string[];
  /** `bind` was set (file or command line) rather than defaulted. */
  bindGiven: boolean;
  workers: number;
  /** Seconds. */
  timeout: number;
  gracefulTimeout: number;
  bootTimeout: number;
  /** Absolute pidfile path. */
  pid: string;
  logFile: string | undefined;
  logLevel: (typeof LOG_LEVELS)[number];
  daemon: boolean;
  maxRequests: number;
  maxRequestsJitter: number;
  /** Replace a worker whose RSS exceeds this many MB (0 = never). */
  maxMemory: number;
  forceWinch: boolean;
  /** Run workers as this user / group (the master must be root). */
  user: string | undefined;
  group: string | undefined;
  /** deploy/rollback: GET this through the first TCP bind; 2xx = healthy. */
  healthPath: string | undefined;
  /** deploy: seconds the new master has to become ready. */
  readyTimeout: number;
  /** deploy: seconds of health checks through the bind after WINCH. */
  verifyWindow: number;
}

/** Defaults for every setting a user may leave out. */
export function defaults(): Omit<
  Config,
  'root' | 'configFile' | 'pid' | 'logFile' | 'bindGiven' | 'healthPath' | 'user' | 'group'
> {
  return {
    bind: ['127.0.0.1:8000'],
    workers: availableParallelism(),
    timeout: 30,
    gracefulTimeout: 30,
    bootTimeout: 60,
    logLevel: 'info',
    daemon: false,
    maxRequests: 0,
    maxRequestsJitter: 0,
    maxMemory: 0,
    forceWinch: false,
    readyTimeout: 60,
    verifyWindow: 2,
  };
}
