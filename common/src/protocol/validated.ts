// Validation at the edge: every incoming event is parsed with its schema before any handler sees it. A payload that
// does not parse is answered `{ ok: false, code: 'bad_payload', message }` through the ack; the connection stays
// up and the handler never runs, so nothing is stored.
import type * as z from 'zod';
import { type ErrorReply, ProtocolError, errorReply } from './errors.js';
import {
  type PayloadOf,
  type ReplyOf,
  type ServerToSiteEvents,
  type SiteToServerEvents,
  serverToSiteSchemas,
  siteToServerSchemas,
} from './events.js';
import { PROTOCOL_VERSION } from './version.js';

/** The one method of a socket.io socket (either side) that onValidated needs. */
export interface ListeningSocket {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  on(event: string, listener: (...args: any[]) => void): unknown;
}

export interface ValidatedContext {
  event: string;
}

export interface OnValidatedOptions {
  /** runs on the raw payload before the schema; a reply short-circuits (used for the protocol version gate) */
  precheck?: (raw: unknown) => ErrorReply | undefined;
  /** told about handler errors that were not ProtocolErrors (they are answered with code 'internal') */
  onError?: (err: unknown, event: string) => void;
}

/** One line per issue (at most 5): `path: message`; never the offending values. */
export function summarizeIssues(error: z.ZodError): string {
  const lines = error.issues
    .slice(0, 5)
    .map((i) => `${i.path.length ? i.path.join('.') : '(payload)'}: ${i.message}`);
  if (error.issues.length > 5) lines.push(`and ${error.issues.length - 5} more`);
  return lines.join('; ');
}

export function onValidated<S extends z.ZodType, R extends { ok: boolean }>(
  socket: ListeningSocket,
  event: string,
  schema: S,
  handler: (payload: z.output<S>, ctx: ValidatedContext) => R | Promise<R>,
  options: OnValidatedOptions = {},
): void {
  socket.on(event, (...args: unknown[]) => {
    const ack =
      typeof args[args.length - 1] === 'function' ? (args.pop() as (reply: unknown) => void) : undefined;
    const reply = (r: unknown) => {
      if (ack) ack(r);
    };
    if (args.length !== 1) {
      reply(errorReply('bad_payload', `expected exactly one payload object, got ${args.length} arguments`));
      return;
    }
    const early = options.precheck?.(args[0]);
    if (early) {
      reply(early);
      return;
    }
    const parsed = schema.safeParse(args[0]);
    if (!parsed.success) {
      reply(errorReply('bad_payload', `${event}: ${summarizeIssues(parsed.error)}`));
      return;
    }
    let result: R | Promise<R>;
    try {
      result = handler(parsed.data, { event });
    } catch (err) {
      reply(failure(err, event, options));
      return;
    }
    Promise.resolve(result).then(reply, (err: unknown) => reply(failure(err, event, options)));
  });
}

function failure(err: unknown, event: string, options: OnValidatedOptions): ErrorReply {
  if (err instanceof ProtocolError) return err.toReply();
  options.onError?.(err, event);
  return errorReply('internal', `${event} failed on the receiving side`, true);
}

/** The version gate for `site:hello`: checked before the schema so a newer hello gets a clear answer. */
export function checkProtocolVersion(raw: unknown, ours = PROTOCOL_VERSION): ErrorReply | undefined {
  if (typeof raw !== 'object' || raw === null) return undefined; // not a hello at all: the schema says why
  const theirs = (raw as { protocolVersion?: unknown }).protocolVersion;
  if (theirs === ours) return undefined;
  if (typeof theirs !== 'number') {
    return errorReply(
      'protocol_mismatch',
      `site:hello carries no numeric protocolVersion; the coordinator speaks v${ours}`,
    );
  }
  return errorReply(
    'protocol_mismatch',
    `this site agent speaks fedsynth protocol v${theirs} and the coordinator speaks v${ours}: ` +
      `upgrade the ${theirs < ours ? 'site agent' : 'coordinator'} so both speak the same version`,
  );
}

type Handler<M, E extends keyof M> = (
  payload: PayloadOf<M[E]>,
  ctx: ValidatedContext,
) => ReplyOf<M[E]> | Promise<ReplyOf<M[E]>>;

/** Coordinator side: a site's event, validated with its schema from the map. `site:hello` gets the version gate. */
export function onSiteEvent<E extends keyof SiteToServerEvents>(
  socket: ListeningSocket,
  event: E,
  handler: Handler<SiteToServerEvents, E>,
  options: OnValidatedOptions = {},
): void {
  const schema = siteToServerSchemas[event] as unknown as z.ZodType<PayloadOf<SiteToServerEvents[E]>>;
  const precheck = event === 'site:hello' ? (raw: unknown) => checkProtocolVersion(raw) : undefined;
  onValidated(socket, event, schema, handler, { precheck, ...options });
}

/** Site side: a coordinator's event, validated with its schema from the map. */
export function onServerEvent<E extends keyof ServerToSiteEvents>(
  socket: ListeningSocket,
  event: E,
  handler: Handler<ServerToSiteEvents, E>,
  options: OnValidatedOptions = {},
): void {
  const schema = serverToSiteSchemas[event] as unknown as z.ZodType<PayloadOf<ServerToSiteEvents[E]>>;
  onValidated(socket, event, schema, handler, options);
}
