import { createHmac } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { EventBus, RecordedEvent } from '@keel/shared-events';
import { deliveryIdOf, startRunners, verifySignature, webhooksCli, type RunnersHandle } from '../src/index.ts';
import {
  type BusKind,
  append,
  eventsOfType,
  eventually,
  ingest,
  openSecretOf,
  registerWebhook,
  createTenant,
  testConfig,
  world,
  type World,
} from './harness.ts';
import { answer, closeConnection, hang, startServer, type Behaviour, type TestServer } from './servers.ts';

/**
 * Outbound webhooks end to end on the PostgreSQL bus: real store, real bus, real local HTTP
 * endpoints that succeed, fail, time out, close the connection or ask to slow down.
 */
export function webhookSuite(kind: BusKind): void {
  describe(`webhook delivery (${kind.name} bus, real endpoints)`, () => {
    let w: World;
    let opened: { bus: EventBus; close(): Promise<void> } | undefined;
    let runners: RunnersHandle | undefined;
    const servers: TestServer[] = [];

    beforeAll(async () => {
      w = await world('webhooks');
    });
    afterEach(async () => {
      await runners?.stop();
      runners = undefined;
      await opened?.close();
      opened = undefined;
      for (const s of servers.splice(0)) await s.close();
    });
    afterAll(async () => {
      await w.close();
    });

    async function start(
      over: Parameters<typeof testConfig>[0] = {},
      env: Record<string, string> = {},
    ): Promise<RunnersHandle> {
      opened = await kind.open(w);
      const bus = opened.bus;
      runners = await startRunners(w.runtime, bus, {
        config: testConfig(over, env),
        openSecret: openSecretOf(w),
        runners: ['webhooks'],
      });
      await runners.ready;
      return runners;
    }
    async function server(b?: Behaviour): Promise<TestServer> {
      const s = await startServer(b ?? answer(200, 'ok'));
      servers.push(s);
      return s;
    }
    const outcomes = (tenantId: string) =>
      eventsOfType(w, ['WebhookDeliverySucceeded', 'WebhookDeliveryFailed', 'WebhookDeliveryDeadLettered'], tenantId);

    it('delivers the envelope, signed as documented, with stable ids, and records the outcome caused by the event', async () => {
      const tenant = await createTenant(w);
      const endpoint = await server();
      const { webhookId, secret } = await registerWebhook(w, tenant, `${endpoint.url}/hooks`);
      await start();
      const [event] = await ingest(w, tenant, ['c-1']);
      await endpoint.waitFor(1);
      const got = endpoint.received[0]!;
      const deliveryId = deliveryIdOf(webhookId, event!.eventId, event!.recordedAt);
      expect(got.url).toBe('/hooks');
      expect(got.headers['content-type']).toBe('application/json');
      expect(got.headers['keel-event-id']).toBe(event!.eventId);
      expect(got.headers['keel-event-type']).toBe('RecordIngested');
      expect(got.headers['idempotency-key']).toBe(deliveryId);
      // The documented formula, computed independently of the runner's code.
      const sig = String(got.headers['keel-signature']);
      const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(sig);
      expect(m).not.toBeNull();
      expect(m![2]).toBe(createHmac('sha256', secret).update(`${m![1]}.${got.body}`).digest('hex'));
      expect(verifySignature(secret, got.body, sig).ok).toBe(true);
      const body = JSON.parse(got.body) as Record<string, unknown>;
      expect(body).toMatchObject({
        eventId: event!.eventId,
        type: 'RecordIngested',
        tenantId: tenant,
        streamId: event!.streamId,
        data: { externalId: 'c-1' },
      });

      const [ok] = await eventually('the success event', async () => {
        const o = await outcomes(tenant);
        return o.length ? o : undefined;
      });
      expect(ok).toMatchObject({
        type: 'WebhookDeliverySucceeded',
        tenantId: tenant,
        causationId: event!.eventId,
        correlationId: 'corr-c-1',
        streamId: `webhook-${tenant}-${webhookId}`,
        data: { webhookId, deliveryId, eventId: event!.eventId, attempt: 1, status: 200 },
      });
      // nothing else was sent (the outcome event itself is never delivered)
      await new Promise((r) => setTimeout(r, 200));
      expect(endpoint.received).toHaveLength(1);
    });

    it('retries a 5xx, a closed connection and a timeout with backoff, keeping the Idempotency-Key, until it succeeds', async () => {
      const tenant = await createTenant(w);
      const failures: Behaviour[] = [answer(503, 'busy'), closeConnection, hang];
      const endpoint = await server((req, res, body, n) =>
        n <= failures.length ? failures[n - 1]!(req, res, body, n) : answer(204)(req, res, body, n),
      );
      const { webhookId } = await registerWebhook(w, tenant, endpoint.url);
      await start({}, { KEEL_RUNNER_WEBHOOK_TIMEOUT_MS: '1000', KEEL_RUNNER_LEASE_MS: '4000' });
      const [event] = await ingest(w, tenant, ['c-2']);
      await endpoint.waitFor(4);
      const keys = new Set(endpoint.received.map((r) => r.headers['idempotency-key']));
      expect(keys).toEqual(new Set([deliveryIdOf(webhookId, event!.eventId, event!.recordedAt)]));
      expect(endpoint.received.map((r) => r.headers['keel-delivery-attempt'])).toEqual(['1', '2', '3', '4']);
      const all = await eventually('four outcomes', async () => {
        const o = await outcomes(tenant);
        return o.length >= 4 ? o : undefined;
      });
      const failed = all
        .filter((e) => e.type === 'WebhookDeliveryFailed')
        .map((e) => e.data as { attempt: number; status?: number; error: string; nextAttemptAt?: string });
      expect(failed).toHaveLength(3);
      expect(failed[0]).toMatchObject({ attempt: 1, status: 503, error: 'endpoint answered 503' });
      expect(failed[1]!.status).toBeUndefined();
      expect(failed[1]!.error).toMatch(/closed|socket|reset/i);
      expect(failed[2]).toMatchObject({ attempt: 3, error: 'no answer within 1000 ms' });
      for (const f of failed) expect(f.nextAttemptAt).toBeDefined();
      // backoff: each retry waited at least half its exponential delay (jitter is the other half)
      const at = endpoint.received.map((r) => r.at);
      expect(at[1]! - at[0]!).toBeGreaterThanOrEqual(25);
      expect(all.at(-1)).toMatchObject({ type: 'WebhookDeliverySucceeded', data: { attempt: 4, status: 204 } });
    });

    it('honours 429 Retry-After', async () => {
      const tenant = await createTenant(w);
      const endpoint = await server((req, res, body, n) =>
        (n === 1 ? answer(429, '', { 'retry-after': '1' }) : answer(200))(req, res, body, n),
      );
      await registerWebhook(w, tenant, endpoint.url);
      await start({}, { KEEL_RUNNER_BACKOFF_MAX_MS: '5000' });
      await ingest(w, tenant, ['c-3']);
      await endpoint.waitFor(2);
      const [failed] = await eventsOfType(w, ['WebhookDeliveryFailed'], tenant);
      const d = failed!.data as { status: number; nextAttemptAt: string };
      expect(d.status).toBe(429);
      // the retry was scheduled (and made) no earlier than the server asked
      expect(Date.parse(d.nextAttemptAt) - failed!.recordedAt.getTime()).toBeGreaterThanOrEqual(950);
      expect(endpoint.received[1]!.at - endpoint.received[0]!.at).toBeGreaterThanOrEqual(950);
    });

    it('with private networks denied, an endpoint on this machine is dead-lettered at once, never called', async () => {
      const tenant = await createTenant(w);
      const endpoint = await server();
      await registerWebhook(w, tenant, endpoint.url.replace('127.0.0.1', 'localhost'));
      await start({}, { KEEL_RUNNER_PRIVATE_NETWORKS: 'deny' });
      await ingest(w, tenant, ['c-ssrf']);
      const [dead] = await eventually('the dead letter', async () => {
        const d = await eventsOfType(w, ['WebhookDeliveryDeadLettered'], tenant);
        return d.length ? d : undefined;
      });
      expect((dead!.data as { reason: string }).reason).toMatch(/DESTINATION_NOT_ALLOWED: localhost resolves to (127\.0\.0\.1|::1)/);
      expect(endpoint.received).toHaveLength(0);
    });

    it('dead-letters after the last attempt, and a redrive (CLI) delivers it with the same Idempotency-Key', async () => {
      const tenant = await createTenant(w);
      const endpoint = await server(answer(500, 'broken'));
      const { webhookId } = await registerWebhook(w, tenant, endpoint.url);
      await start({}, { KEEL_RUNNER_WEBHOOK_MAX_ATTEMPTS: '3' });
      const [event] = await ingest(w, tenant, ['c-4']);
      const deliveryId = deliveryIdOf(webhookId, event!.eventId, event!.recordedAt);
      const [dead] = await eventually('the dead letter', async () => {
        const d = await eventsOfType(w, ['WebhookDeliveryDeadLettered'], tenant);
        return d.length ? d : undefined;
      });
      expect(dead).toMatchObject({ causationId: event!.eventId, data: { deliveryId, attempts: 3 } });
      expect((dead!.data as { reason: string }).reason).toMatch(
        /gave up after 3 attempts; last: endpoint answered 500/,
      );
      expect(endpoint.received).toHaveLength(3);

      let printed = '';
      const out = { write: (s: string) => (printed += s) };
      // the dead letter event is appended just before the row records it
      await eventually('the dead-lettered row', async () => {
        printed = '';
        expect(await webhooksCli(w.runtime, ['dead', '--tenant', tenant], out)).toBe(0);
        return printed.includes(deliveryId) ? true : undefined;
      });
      expect(await webhooksCli(w.runtime, ['redrive', '--tenant', 'other-tenant', '--delivery', deliveryId], out)).toBe(
        1,
      );
      expect(await webhooksCli(w.runtime, ['redrive', '--tenant', tenant], out)).toBe(2);

      endpoint.behave(answer(200));
      expect(await webhooksCli(w.runtime, ['redrive', '--tenant', tenant, '--delivery', deliveryId], out)).toBe(0);
      await endpoint.waitFor(4);
      expect(endpoint.received[3]!.headers['idempotency-key']).toBe(deliveryId);
      expect(endpoint.received[3]!.headers['keel-delivery-attempt']).toBe('4');
      const ok = await eventually(
        'the redriven success',
        async () => (await eventsOfType(w, ['WebhookDeliverySucceeded'], tenant))[0],
      );
      expect(ok.data).toMatchObject({ deliveryId, attempt: 4 });
      const redriven = await eventsOfType(w, ['WebhookDeliveryRedriven'], tenant);
      expect(redriven).toHaveLength(1);
      // a second redrive finds nothing dead
      expect(await webhooksCli(w.runtime, ['redrive', '--tenant', tenant, '--delivery', deliveryId], out)).toBe(1);
    });

    it('a redrive that arrives while the last attempt is still out is not lost', async () => {
      const tenant = await createTenant(w);
      const endpoint = await server(hang);
      const { webhookId } = await registerWebhook(w, tenant, endpoint.url);
      await start({}, { KEEL_RUNNER_WEBHOOK_MAX_ATTEMPTS: '1', KEEL_RUNNER_WEBHOOK_TIMEOUT_MS: '500' });
      const [event] = await ingest(w, tenant, ['r-1']);
      const deliveryId = deliveryIdOf(webhookId, event!.eventId, event!.recordedAt);
      await endpoint.waitFor(1);
      endpoint.behave(answer(200));
      // the operator redrives while the (last) attempt is still waiting for its timeout
      await append(w, `webhook-${tenant}-${webhookId}`, [
        { type: 'WebhookDeliveryRedriven', tenantId: tenant, data: { webhookId, deliveryId } },
      ]);
      const ok = await eventually(
        'the redriven success',
        async () => (await eventsOfType(w, ['WebhookDeliverySucceeded'], tenant))[0],
      );
      expect(ok.data).toMatchObject({ deliveryId, attempt: 2 });
      expect(await eventsOfType(w, ['WebhookDeliveryDeadLettered'], tenant)).toHaveLength(1);
    });

    it('the circuit opens after repeated failures (the endpoint stops being called) and recovers through a probe', async () => {
      const tenant = await createTenant(w);
      const endpoint = await server(answer(503));
      await registerWebhook(w, tenant, endpoint.url);
      await start(
        { breaker: { failureThreshold: 3, openMs: 1500, maxOpenMs: 1500, halfOpenProbes: 1, closeAfterSuccesses: 1 } },
        { KEEL_RUNNER_WEBHOOK_MAX_ATTEMPTS: '50', KEEL_RUNNER_PER_DESTINATION: '1' },
      );
      await ingest(
        w,
        tenant,
        Array.from({ length: 10 }, (_, i) => `b-${i}`),
      );
      const open = await eventually('an open circuit', async () => {
        const r = await w.pool.query(`select state from keel_runner_breakers where destination = $1`, [
          `${tenant}|${endpoint.url}`,
        ]);
        return r.rows[0]?.state === 'open' ? r.rows[0] : undefined;
      });
      expect(open.state).toBe('open');
      // while open, the ten deliveries wait instead of hitting the endpoint
      const whileOpen = endpoint.received.length;
      expect(whileOpen).toBeLessThan(10);
      endpoint.behave(answer(200));
      await eventually('every delivery succeeded', async () =>
        (await eventsOfType(w, ['WebhookDeliverySucceeded'], tenant)).length === 10 ? true : undefined,
      );
      await eventually('the circuit closed again', async () => {
        const r = await w.pool.query(`select state from keel_runner_breakers where destination = $1`, [
          `${tenant}|${endpoint.url}`,
        ]);
        return r.rows[0]?.state === 'closed' ? true : undefined;
      });
    });

    it("one tenant's failing endpoint does not hold back another tenant's deliveries", async () => {
      const slowTenant = await createTenant(w);
      const fastTenant = await createTenant(w);
      const stuck = await server(hang);
      const fast = await server(answer(200));
      await registerWebhook(w, slowTenant, stuck.url);
      await registerWebhook(w, fastTenant, fast.url);
      // Endpoint timeout far beyond the test: the stuck endpoint's calls stay open the whole time.
      await start(
        {},
        { KEEL_RUNNER_WEBHOOK_TIMEOUT_MS: '60000', KEEL_RUNNER_LEASE_MS: '120000', KEEL_RUNNER_PER_DESTINATION: '4' },
      );
      await ingest(
        w,
        slowTenant,
        Array.from({ length: 60 }, (_, i) => `s-${i}`),
      );
      await stuck.waitFor(4);
      await ingest(
        w,
        fastTenant,
        Array.from({ length: 50 }, (_, i) => `f-${i}`),
      );
      await fast.waitFor(50);
      const delivered = await eventually('fifty successes', async () => {
        const ok = await eventsOfType(w, ['WebhookDeliverySucceeded'], fastTenant);
        return ok.length === 50 ? ok : undefined;
      });
      expect(delivered).toHaveLength(50);
      // ...all while the stuck endpoint still holds its calls: at most its concurrency limit, none answered
      expect(stuck.received.length).toBeLessThanOrEqual(4);
      expect(await eventsOfType(w, ['WebhookDeliverySucceeded', 'WebhookDeliveryFailed'], slowTenant)).toHaveLength(0);
      // graceful stop hands the stuck deliveries back instead of losing them
      await runners!.stop();
      runners = undefined;
      const back = await w.pool.query(
        `select state, count(*)::int as n from keel_runner_deliveries where tenant_id = $1 group by state`,
        [slowTenant],
      );
      expect(back.rows).toEqual([{ state: 'pending', n: 60 }]);
    }, 60_000);

    it('an endpoint updated to a new URL gets later deliveries; a removed one dead-letters what it had pending', async () => {
      const tenant = await createTenant(w);
      const first = await server(answer(200));
      const second = await server(answer(200));
      const { webhookId } = await registerWebhook(w, tenant, first.url);
      await start();
      await ingest(w, tenant, ['u-1']);
      await first.waitFor(1);
      await append(w, `webhook-${tenant}-${webhookId}`, [
        { type: 'WebhookEndpointUpdated', tenantId: tenant, data: { webhookId, url: second.url } },
      ]);
      await ingest(w, tenant, ['u-2']);
      await second.waitFor(1);
      expect(JSON.parse(second.received[0]!.body)).toMatchObject({ data: { externalId: 'u-2' } });
      second.behave(answer(500));
      await ingest(w, tenant, ['u-3']);
      await second.waitFor(2);
      await append(w, `webhook-${tenant}-${webhookId}`, [
        { type: 'WebhookEndpointRemoved', tenantId: tenant, data: { webhookId } },
      ]);
      const dead = await eventually(
        'dead letter of the removed endpoint',
        async () => (await eventsOfType(w, ['WebhookDeliveryDeadLettered'], tenant))[0],
      );
      expect((dead.data as { reason: string }).reason).toBe('endpoint removed');
      await ingest(w, tenant, ['u-4']);
      await new Promise((r) => setTimeout(r, 300));
      expect(first.received).toHaveLength(1);
      expect(second.received.every((r) => !r.body.includes('u-4'))).toBe(true);
    });

    it('a redelivered bus batch does not deliver twice', async () => {
      const tenant = await createTenant(w);
      const endpoint = await server(answer(200));
      await registerWebhook(w, tenant, endpoint.url);
      const r = await start();
      const events: RecordedEvent[] = await ingest(w, tenant, ['d-1', 'd-2']);
      await endpoint.waitFor(2);
      // the bus hands the same events again (at-least-once)
      await r.webhooks!.intake({
        group: 'runner-webhooks',
        events,
        lane: 'test',
        heartbeat: async () => undefined,
        isRunning: () => true,
      });
      await new Promise((res) => setTimeout(res, 300));
      expect(endpoint.received).toHaveLength(2);
    });
  });
}
