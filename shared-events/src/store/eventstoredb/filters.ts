import { eventTypeFilter, streamNameFilter, type Filter } from '@eventstore/db-client';
import { streamCategory } from '../../envelope.ts';
import type { RecordedEvent } from '../../envelope.ts';
import { ValidationError } from '../../errors.ts';
import type { AllFilter } from '../port.ts';

/**
 * Turns the port's $all filter into an EventStoreDB server-side filter plus an exact check run
 * on what the server sends back.
 *
 * EventStoreDB filters on ONE thing per read, the stream name or the event type, by prefixes or
 * by one regex. Tenants and categories live in the stream name (`{category}-{tenantId}-{id}`),
 * so whenever either is asked for the server filters on the stream name, and event types, if
 * also asked for, are checked here. The check here is exact and always runs: the stream-name
 * regex cannot tell a slug tenant `abcdef01` from the first block of a UUID tenant
 * `abcdef01-…`, and tenant isolation must not hinge on a regex.
 */
export interface ServerFilterSpec {
  filterOn: 'streamName' | 'eventType';
  regex?: string;
  prefixes?: string[];
}

export interface AllFilterPlan {
  /** Undefined when nothing narrows the read beyond "Keel events only". */
  server?: ServerFilterSpec;
  accepts(event: RecordedEvent): boolean;
}

/** Stream names Keel writes: a lowercase category, a dash, then the tenant and id. */
export const KEEL_STREAM_REGEX = '^[a-z][a-z0-9_]*-';

/** Escapes regex metacharacters; the result means the same to JavaScript and to .NET (the server). */
export function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\#\s]/g, (c) =>
    /\s/.test(c) ? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}` : `\\${c}`,
  );
}

export function planAllFilter(filter: AllFilter | undefined): AllFilterPlan {
  const tenantId = filter?.tenantId;
  const categories = filter?.categories;
  const eventTypes = filter?.eventTypes;

  if (tenantId !== undefined && (typeof tenantId !== 'string' || tenantId === '')) {
    throw new ValidationError('filter.tenantId must be a non-empty string', 'filter.tenantId');
  }
  // Like the PostgreSQL store: any strings; one that is no category simply matches nothing.
  for (const [list, field] of [
    [categories, 'filter.categories'],
    [eventTypes, 'filter.eventTypes'],
  ] as const) {
    if (list !== undefined && (!Array.isArray(list) || list.some((x) => typeof x !== 'string'))) {
      throw new ValidationError(`${field} must be an array of strings`, field);
    }
  }

  const categorySet = categories ? new Set(categories) : undefined;
  const typeSet = eventTypes ? new Set(eventTypes) : undefined;
  const accepts = (e: RecordedEvent): boolean =>
    (tenantId === undefined || e.tenantId === tenantId) &&
    (categorySet === undefined || categorySet.has(streamCategory(e.streamId))) &&
    (typeSet === undefined || typeSet.has(e.type));

  // An empty list matches nothing; the server is asked for a regex that cannot match.
  if ((categories && categories.length === 0) || (eventTypes && eventTypes.length === 0)) {
    return { server: { filterOn: 'eventType', regex: '^(?!)' }, accepts };
  }

  let server: ServerFilterSpec | undefined;
  if (tenantId !== undefined) {
    const category = categories ? `(?:${categories.map(escapeRegex).join('|')})` : '[a-z][a-z0-9_]*';
    server = { filterOn: 'streamName', regex: `^${category}-${escapeRegex(tenantId)}-` };
  } else if (categories) {
    server = { filterOn: 'streamName', prefixes: categories.map((c) => `${c}-`) };
  } else if (eventTypes) {
    server = { filterOn: 'eventType', regex: `^(?:${eventTypes.map(escapeRegex).join('|')})$` };
  }
  return server ? { server, accepts } : { accepts };
}

/** The client's Filter for a server spec; without one (an unfiltered subscription), Keel-shaped streams only. */
export function toClientFilter(
  spec: ServerFilterSpec | undefined,
  options: { checkpointReached?: Filter['checkpointReached']; maxSearchWindow?: number } = {},
): Filter {
  const s = spec ?? { filterOn: 'streamName', regex: KEEL_STREAM_REGEX };
  const common = {
    checkpointInterval: 1,
    ...(options.checkpointReached ? { checkpointReached: options.checkpointReached } : {}),
    ...(options.maxSearchWindow ? { maxSearchWindow: options.maxSearchWindow } : {}),
  };
  const make = s.filterOn === 'streamName' ? streamNameFilter : eventTypeFilter;
  return s.prefixes ? make({ ...common, prefixes: s.prefixes }) : make({ ...common, regex: s.regex ?? '' });
}
