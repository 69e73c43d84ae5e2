/**
 * The handover from an old master to the new master it spawns (docs/upgrade.md): the sockets
 * it inherits, in a structured, versioned form, and the one line the new master writes on its
 * ready pipe. Both are parsed with a schema where they cross the process boundary.
 */
import * as v from 'valibot';

/** What a handed socket serves: the app (workers accept on it) or the master's metrics. */
export const SOCKET_ROLES = ['app', 'metrics'] as const;

/** One inherited listen socket, as `PREFORK_SOCKETS` lists it. */
export const HandedSocketSchema = v.object({
  fd: v.pipe(v.number(), v.integer(), v.minValue(3)),
  /** Its canonical bind name (`127.0.0.1:8000`, `unix:/run/app.sock`), any character allowed. */
  bind: v.string(),
  role: v.picklist(SOCKET_ROLES),
  /** Came from systemd socket activation: never unlinked, passed on across USR2. */
  systemd: v.boolean(),
});
export type HandedSocket = v.InferOutput<typeof HandedSocketSchema>;

/** The JSON value of `PREFORK_SOCKETS`. */
export const HandedSocketsSchema = v.object({
  sockets: v.array(HandedSocketSchema),
});
export type HandedSockets = v.InferOutput<typeof HandedSocketsSchema>;

/** One JSON line written on the ready fd by a new master (or `start --daemon`'s master). */
export const ReadyMessageSchema = v.variant('ready', [
  v.object({
    ready: v.literal(true),
    pid: v.pipe(v.number(), v.integer()),
    /** Bind names the new master serves: the old one leaves those Unix socket files alone. */
    binds: v.array(v.string()),
    /** The new master's handover protocol and prefork version (absent from protocol 1). */
    protocol: v.optional(v.number()),
    version: v.optional(v.string()),
  }),
  v.object({ ready: v.literal(false), error: v.string() }),
]);
export type ReadyMessage = v.InferOutput<typeof ReadyMessageSchema>;

/** Parses a ready line; a line no prefork writes is a failure that says what it was. */
export function parseReadyMessage(line: string): ReadyMessage {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return {
      ready: false,
      error: `the new master wrote a line that is not JSON: ${line.slice(0, 200)}`,
    };
  }
  const parsed = v.safeParse(ReadyMessageSchema, value);
  if (parsed.success) return parsed.output;
  return {
    ready: false,
    error: `the new master wrote a ready message this prefork does not read: ${line.slice(0, 200)}`,
  };
}
