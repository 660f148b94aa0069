import { keelEventTypes, roles } from '@keel/shared-events';

/**
 * JSON-schema fragments shared by the routes. Every body is `additionalProperties: false`:
 * an unknown field is a 400, never silently dropped.
 */
export const UUID = '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$';
export const KEY_ID = '^[0-9a-f]{20}$';
/** User ids come from SSO subjects (e.g. `auth0|123`) or are generated. */
export const USER_ID = '^[A-Za-z0-9._@:|+-]{1,128}$';
/** Free text: no control characters (they break logs and terminals, and NUL breaks PostgreSQL). */
export const TEXT = '^[^\\u0000-\\u001f\\u007f]*$';

export const text = (maxLength: number, minLength = 1) => ({ type: 'string', minLength, maxLength, pattern: TEXT }) as const;
export const uuid = { type: 'string', pattern: UUID } as const;
export const role = { type: 'string', enum: [...roles] } as const;
export const eventType = { type: 'string', enum: [...keelEventTypes] } as const;
export const httpUrl = { type: 'string', format: 'uri', pattern: '^https?://', maxLength: 2048 } as const;

export const tenantParams = {
  type: 'object',
  required: ['tenantId'],
  properties: { tenantId: uuid },
} as const;

export function paramsWith(extra: Record<string, unknown>) {
  return {
    type: 'object',
    required: ['tenantId', ...Object.keys(extra)],
    properties: { tenantId: uuid, ...extra },
  } as const;
}

export const writeHeaders = {
  type: 'object',
  properties: {
    'idempotency-key': {
      type: 'string',
      pattern: '^[\\x21-\\x7e]{1,255}$',
      description: 'Retries with the same key get the first answer and append nothing (24 h); another body → 422',
    },
  },
} as const;

export const ifMatchHeaders = {
  type: 'object',
  properties: {
    ...writeHeaders.properties,
    'if-match': { type: 'string', description: 'Expected stream revision (from ETag or `revision`); mismatch → 412' },
  },
} as const;

export const errorSchema = {
  type: 'object',
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['code', 'message'],
      properties: { code: { type: 'string' }, message: { type: 'string' }, details: {} },
    },
  },
} as const;

const errorDoc = (description: string) => ({ description, ...errorSchema });

/** The error answers every authenticated write can give, for /docs. */
export const writeErrors = {
  400: errorDoc('Invalid input (VALIDATION_FAILED, BAD_REQUEST)'),
  401: errorDoc('No, an invalid or a revoked key (UNAUTHENTICATED, KEY_REVOKED)'),
  403: errorDoc('Role lacks the permission, or the tenant is suspended (FORBIDDEN, ROLE_TOO_HIGH, TENANT_SUSPENDED)'),
  404: errorDoc('Unknown tenant or thing — also for another tenant\'s (NOT_FOUND)'),
  409: errorDoc('Conflict (ALREADY_EXISTS, CONCURRENCY_CONFLICT, IDEMPOTENCY_KEY_IN_USE)'),
  410: errorDoc('Removed, or the tenant was erased (GONE, TENANT_ERASED)'),
  412: errorDoc('If-Match does not match the stream revision (PRECONDITION_FAILED)'),
  413: errorDoc('Body too large (PAYLOAD_TOO_LARGE)'),
  415: errorDoc('Content type not accepted (UNSUPPORTED_MEDIA_TYPE)'),
  422: errorDoc('A business rule says no, or the Idempotency-Key was used with another body (RULE_VIOLATED, LAST_OWNER, IDEMPOTENCY_KEY_REUSED)'),
  429: errorDoc('Rate limited; see Retry-After (RATE_LIMITED)'),
} as const;

/** `revision` and `globalPosition` of every write answer. */
export const positionProps = {
  revision: { type: 'integer', description: 'Stream revision after the write (use as If-Match)' },
  globalPosition: { type: 'integer', description: 'Global log position; pass as minPosition to the read side' },
} as const;

export function okSchema(properties: Record<string, unknown>, required: string[] = []) {
  return { type: 'object', required: [...required, 'revision', 'globalPosition'], properties: { ...properties, ...positionProps } } as const;
}

export const security = [{ bearerAuth: [] }];
