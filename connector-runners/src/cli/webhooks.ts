import { uuidv7, type KeelRuntime, type NewEvent } from '@keel/shared-events';
import { webhookStream } from '../webhooks/runner.ts';

/**
 * `keel webhooks <command>`: operator tools for outbound webhook deliveries.
 *
 *   keel webhooks dead    --tenant <id> [--webhook <id>] [--limit <n>]       list dead-lettered deliveries
 *   keel webhooks redrive --tenant <id> --delivery <id> [--delivery <id> ...]
 *   keel webhooks redrive --tenant <id> --webhook <id> --all                  every dead letter of the endpoint
 *
 * A redrive appends WebhookDeliveryRedriven (the same event the HTTP redrive route appends); the
 * runner puts the delivery back on the schedule with a fresh set of attempts and the same
 * Idempotency-Key. Exit codes: 0 done, 1 nothing to redrive / not found, 2 bad usage.
 */
export interface Out {
  write(chunk: string): unknown;
}

export type CliCommand = (runtime: KeelRuntime, args: string[], out: Out) => Promise<number>;

const USAGE = `usage:
  keel webhooks dead    --tenant <id> [--webhook <id>] [--limit <n>]
  keel webhooks redrive --tenant <id> --delivery <id> [--delivery <id> ...]
  keel webhooks redrive --tenant <id> --webhook <id> --all
`;

interface Parsed {
  tenant?: string;
  webhook?: string;
  deliveries: string[];
  all: boolean;
  limit: number;
  errors: string[];
}

function parse(args: string[]): Parsed {
  const p: Parsed = { deliveries: [], all: false, limit: 100, errors: [] };
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const value = (): string | undefined => {
      const [flag, inline] = a.split('=', 2);
      if (inline !== undefined) return inline;
      const v = args[i + 1];
      if (v === undefined || v.startsWith('--')) {
        p.errors.push(`${flag} needs a value`);
        return undefined;
      }
      i++;
      return v;
    };
    const flag = a.split('=', 1)[0];
    switch (flag) {
      case '--tenant':
        p.tenant = value();
        break;
      case '--webhook':
        p.webhook = value();
        break;
      case '--delivery': {
        const v = value();
        if (v) p.deliveries.push(v);
        break;
      }
      case '--all':
        p.all = true;
        break;
      case '--limit': {
        const v = Number(value());
        if (!Number.isInteger(v) || v < 1 || v > 10_000)
          p.errors.push('--limit must be a whole number from 1 to 10000');
        else p.limit = v;
        break;
      }
      default:
        p.errors.push(`unknown argument ${a}`);
    }
  }
  if (!p.tenant) p.errors.push('--tenant is required');
  return p;
}

interface DeadRow {
  delivery_id: string;
  webhook_id: string;
  event_id: string;
  event_type: string;
  attempt: number;
  last_status: number | null;
  last_error: string | null;
  updated_at: Date;
}

export const webhooksDead: CliCommand = async (runtime, args, out) => {
  const p = parse(args);
  if (p.errors.length) {
    out.write(`${p.errors.join('\n')}\n${USAGE}`);
    return 2;
  }
  const { rows } = await runtime.pool.query<DeadRow>(
    `select delivery_id, webhook_id, event_id, event_type, attempt, last_status, last_error, updated_at
       from keel_runner_deliveries where tenant_id = $1 and state = 'dead' and ($2::text is null or webhook_id = $2)
      order by updated_at desc limit $3`,
    [p.tenant, p.webhook ?? null, p.limit],
  );
  if (!rows.length) {
    out.write('no dead-lettered deliveries\n');
    return 0;
  }
  out.write(`${['delivery', 'webhook', 'event type', 'attempts', 'last error', 'dead since'].join('\t')}\n`);
  for (const r of rows)
    out.write(
      `${[r.delivery_id, r.webhook_id, r.event_type, r.attempt, (r.last_error ?? '').replace(/\s+/g, ' ').slice(0, 120), r.updated_at.toISOString()].join('\t')}\n`,
    );
  return 0;
};

export const webhooksRedrive: CliCommand = async (runtime, args, out) => {
  const p = parse(args);
  if (!p.errors.length && !p.deliveries.length && !(p.all && p.webhook))
    p.errors.push('name deliveries with --delivery, or an endpoint with --webhook and --all');
  if (!p.errors.length && p.deliveries.length && p.all) p.errors.push('--delivery and --all exclude each other');
  if (p.errors.length) {
    out.write(`${p.errors.join('\n')}\n${USAGE}`);
    return 2;
  }
  const bad = p.deliveries.filter((d) => !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(d));
  if (bad.length) {
    out.write(`not delivery ids: ${bad.join(', ')}\n`);
    return 2;
  }
  const { rows } = await runtime.pool.query<{ delivery_id: string; webhook_id: string; correlation_id: string | null }>(
    p.all
      ? `select delivery_id, webhook_id, correlation_id from keel_runner_deliveries where tenant_id = $1 and webhook_id = $2 and state = 'dead' order by updated_at limit 100000`
      : `select delivery_id, webhook_id, correlation_id from keel_runner_deliveries where tenant_id = $1 and delivery_id = any($2::uuid[]) and state = 'dead'`,
    [p.tenant, p.all ? p.webhook : p.deliveries],
  );
  const found = new Set(rows.map((r) => r.delivery_id));
  for (const d of p.deliveries)
    if (!found.has(d)) out.write(`${d}: not a dead-lettered delivery of tenant ${p.tenant}\n`);
  if (!rows.length) {
    out.write('nothing to redrive\n');
    return 1;
  }
  const correlationId = uuidv7();
  const appends = rows.map((r) => {
    const e: NewEvent = {
      type: 'WebhookDeliveryRedriven',
      tenantId: p.tenant!,
      actor: { kind: 'system', id: 'keel-cli' },
      correlationId,
      data: { webhookId: r.webhook_id, deliveryId: r.delivery_id },
    };
    return { streamId: webhookStream(p.tenant!, r.webhook_id), events: [e] };
  });
  for (let i = 0; i < appends.length; i += 1000) await runtime.store.appendBatch(appends.slice(i, i + 1000));
  out.write(`redriven ${rows.length} deliver${rows.length === 1 ? 'y' : 'ies'} (correlation ${correlationId})\n`);
  return p.deliveries.length && rows.length < p.deliveries.length ? 1 : 0;
};

/** `keel webhooks ...`: dispatches on the first argument. */
export const webhooksCli: CliCommand = async (runtime, args, out) => {
  const [command, ...rest] = args;
  if (command === 'redrive') return webhooksRedrive(runtime, rest, out);
  if (command === 'dead') return webhooksDead(runtime, rest, out);
  out.write(USAGE);
  return 2;
};
