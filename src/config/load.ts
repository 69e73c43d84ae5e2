import { existsSync, readFileSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import * as v from 'valibot';
import { UsageError } from '../errors/index.js';
import { CONFIG_FILE, PIDFILE } from '../protocol/files.js';
import { type Bind, parseBind } from './bind.js';
import { type Config, configSchema, defaults, type PartialConfig } from './schema.js';

/** Where the settings come from: the app root, an explicit config file, command-line values. */
export interface ConfigSources {
  root: string;
  /** `--config FILE`; without it `<root>/prefork.config.json` is read when it exists. */
  configFile?: string | undefined;
  /** Values given on the command line (already typed); they win over the file. */
  cli: PartialConfig;
}

/** The kebab-case option a camelCase key is given with on the command line. */
function optionName(key: string): string {
  return `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

/**
 * One line per problem of a valibot parse, each naming the key (`label` spells it) and what it
 * allows; unknown keys last, all of them. Shared by the configuration and `prefork.json`.
 */
export function describeIssues(
  value: unknown,
  issues: readonly v.BaseIssue<unknown>[],
  allowed: readonly string[],
  label: (path: string[]) => string,
): string {
  const given = typeof value === 'object' && value !== null ? Object.keys(value) : [];
  const unknown = given.filter((key) => !allowed.includes(key));
  const problems = issues
    // Unknown keys are listed once below; a missing required key is a problem of its own.
    .filter(
      (issue) =>
        issue.type !== 'strict_object' || allowed.includes(String(issue.path?.at(-1)?.key)),
    )
    .map(
      (issue) => `${label((issue.path ?? []).map((item) => String(item.key)))}: ${issue.message}`,
    );
  if (unknown.length > 0) {
    problems.push(
      `unknown key ${unknown.map((k) => `"${k}"`).join(', ')} (allowed keys: ${allowed.join(', ')})`,
    );
  }
  return problems.join('; ');
}

/** Validates a partial configuration, throwing a {@link UsageError} that names every bad key. */
export function validatePartial(
  value: unknown,
  origin: string,
  where: 'file' | 'cli',
): PartialConfig {
  const parsed = v.safeParse(configSchema, value);
  if (!parsed.success) {
    const label = (path: string[]) =>
      where === 'cli' ? optionName(path[0] ?? '') : `"${path.join('.')}"`;
    const allowed = Object.keys(configSchema.entries);
    throw new UsageError(`${origin}: ${describeIssues(value, parsed.issues, allowed, label)}`);
  }
  return parsed.output;
}

/** Reads and validates a JSON config file. */
export function readConfigFile(file: string): PartialConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new UsageError(`cannot read config file ${file}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`${file} is not valid JSON: ${(error as Error).message}`, {
      cause: error,
    });
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new UsageError(`${file} must hold a JSON object of settings`);
  }
  return validatePartial(json, file, 'file');
}

/**
 * The effective configuration: defaults, then the config file, then the command line.
 * Relative paths in the file and on the command line are taken from the app root.
 * Every bind is parsed, so a bad one fails here, before anything starts.
 */
export function loadConfig(sources: ConfigSources): Config {
  const root = resolve(sources.root);
  const cli = validatePartial(sources.cli, 'command line', 'cli');
  const explicit = sources.configFile !== undefined;
  const configFile = explicit
    ? resolve(root, sources.configFile as string)
    : existsSync(join(root, CONFIG_FILE))
      ? join(root, CONFIG_FILE)
      : undefined;
  const file = configFile ? readConfigFile(configFile) : {};
  const merged = { ...defaults(), ...file, ...cli };
  const binds = merged.bind.map(parseBind);
  if (merged.metricsBind !== undefined) {
    const key = cli.metricsBind !== undefined ? '--metrics-bind' : `"metricsBind" in ${configFile}`;
    checkMetricsBind(merged.metricsBind, binds, key);
  }
  const inRoot = (path: string): string => (isAbsolute(path) ? path : resolve(root, path));
  return {
    ...merged,
    root,
    configFile,
    bindGiven: file.bind !== undefined || cli.bind !== undefined,
    pid: inRoot(merged.pid ?? PIDFILE),
    logFile: merged.logFile === undefined ? undefined : inRoot(merged.logFile),
    healthPath: merged.healthPath,
    user: merged.user,
    group: merged.group,
    warmupPath: merged.warmupPath,
    metricsBind: merged.metricsBind,
    init: merged.init,
    node: merged.node === undefined ? undefined : inRoot(merged.node),
  };
}

/**
 * True when two binds would take the same address: the same Unix path, or the same TCP port on
 * the same host or where either host is a wildcard (port 0 is a new port each time).
 */
function sameAddress(a: Bind, b: Bind): boolean {
  if (a.kind === 'unix' || b.kind === 'unix') return a.name === b.name;
  if (a.port === 0 || b.port === 0 || a.port !== b.port) return false;
  const wildcard = (host: string | undefined) =>
    host === undefined || host === '0.0.0.0' || host === '::';
  return a.host === b.host || wildcard(a.host) || wildcard(b.host);
}

/**
 * The metrics bind parses and is none of the app's binds: metrics are served by the master on a
 * socket of their own, never where the workers accept. `key` names where it was given.
 */
function checkMetricsBind(value: string, binds: Bind[], key: string): void {
  let bind: Bind;
  try {
    bind = parseBind(value);
  } catch (error) {
    throw new UsageError(`${key}: ${(error as Error).message}`, { cause: error });
  }
  const clash = binds.find((b) => sameAddress(b, bind));
  if (clash !== undefined) {
    throw new UsageError(
      `${key} "${value}" is also an app bind (${clash.name}): metrics are served on a socket of their own, never on the app's; pick another address or port`,
    );
  }
}
