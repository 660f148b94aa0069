import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { Registry } from 'prom-client';
import { createKafkaBus, startRelay } from '@keel/shared-events';
import type { EventBus, Relay } from '@keel/shared-events';
import { rebuildProjection, startProjectors, verifyAuditChain } from '../src/index.ts';
import type { ProjectorsHandle } from '../src/index.ts';
import { describeWithServer, kafkaBrokers, kafkaSkipReason } from '../../test/support.ts';
import {
  auth,
  createTenant,
  dumpTable,
  ingest,
  integrationActivity,
  modelTables,
  testApp,
  testEnv,
  testLogger,
  waitForProjection,
} from './support.ts';
import type { TestEnv, TestTenant } from './support.ts';

/**
 * The Kafka profile: the relay publishes the store to a real broker (12 partitions, key =
 * tenant), and the projectors consume it as consumer groups. Same read models, same guarantees.
 */
describeWithServer(
  'kafka',
  'projectors on the Kafka bus (real broker)',
  kafkaBrokers(),
  kafkaSkipReason(),
  (brokerList) => {
    const brokers = brokerList.split(',');
    let env: TestEnv;
    let bus: EventBus;
    let relay: Relay;
    let projectors: ProjectorsHandle;
    let app: FastifyInstance;
    const tenants: TestTenant[] = [];

    beforeAll(async () => {
      env = await testEnv('kproj');
      for (const name of ['A', 'B', 'C']) tenants.push(await createTenant(env, name));
      for (const t of tenants) {
        await ingest(env, t.tenantId, 40);
        await integrationActivity(env, t.tenantId);
      }
      const topic = `keel.test.projection.${randomBytes(4).toString('hex')}`;
      bus = createKafkaBus({
        brokers,
        topic,
        deadLetterTopic: `${topic}.dlq`,
        logger: testLogger,
        sessionTimeoutMs: 6_000,
      });
      relay = startRelay({
        store: env.store,
        pool: env.pool,
        brokers,
        topic,
        logger: testLogger,
        registry: new Registry(),
        pollIntervalMs: 5,
      });
      projectors = await startProjectors(env.runtime, bus, { config: env.config });
      await projectors.ready;
      await waitForProjection(env, 'audit', undefined, 60_000);
      await waitForProjection(env, 'dashboard', undefined, 60_000);
      app = await testApp(env);
    }, 180_000);
    afterAll(async () => {
      await app?.close();
      await projectors?.stop();
      await relay?.stop();
      await bus?.close();
      await env?.close();
    });

    it('projects every event once, in per-tenant chains that verify', async () => {
      const r = await env.pool.query(
        `select (select count(*)::int from keel_events) as events, (select count(*)::int from audit_events) as rows,
              (select count(*)::int from (select event_id from audit_events group by event_id having count(*) > 1) d) as dups`,
      );
      expect(r.rows[0]).toEqual({ events: r.rows[0].events, rows: r.rows[0].events, dups: 0 });
      for (const t of tenants)
        expect((await verifyAuditChain(env.runtime, t.tenantId, { config: env.config })).ok).toBe(true);
    });

    it('read-your-writes: minPosition waits for the tenant’s partition to be applied', async () => {
      const t = tenants[1]!;
      const pos = await ingest(env, t.tenantId, 2, 500);
      const res = await app.inject({
        method: 'GET',
        url: `/v1/tenants/${t.tenantId}/audit?limit=1&minPosition=${pos}`,
        headers: auth(t.keys.auditor),
      });
      expect(res.statusCode).toBe(200);
      expect(res.json().items[0].position).toBe(pos);
    });

    it('the model built from Kafka equals a rebuild from the store', async () => {
      await waitForProjection(env, 'audit', undefined, 60_000);
      await waitForProjection(env, 'dashboard', undefined, 60_000);
      for (const projection of ['audit', 'dashboard'] as const) {
        const before: Record<string, unknown[]> = {};
        for (const [table, order] of modelTables[projection]) before[table] = await dumpTable(env.pool, table, order);
        await rebuildProjection(env.runtime, projection);
        for (const [table, order] of modelTables[projection])
          expect(await dumpTable(env.pool, table, order), table).toEqual(before[table]);
      }
    });
  },
);
