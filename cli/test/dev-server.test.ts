import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadBaseConfig } from '@keel/shared-events';
import { describeWithServer, freshDatabase, kafkaBrokers, kafkaSkipReason } from '../../test/support.ts';
import { startDevServer, type DevServer } from '../src/dev.ts';

/**
 * The all-in-one server over a real socket: the README's quick start, end to end — a tenant,
 * an NDJSON ingest with one bad line, then the read side (audit, verify, dashboard) catching up.
 */
function devServerSuite(profile: 'postgres' | 'kafka', brokers?: string): void {
  let server: DevServer;
  const adminKey = `keel_admin_${'a1'.repeat(32)}`;

  beforeAll(async () => {
    const databaseUrl = await freshDatabase('dev');
    const config = loadBaseConfig({
      KEEL_PROFILE: profile,
      DATABASE_URL: databaseUrl,
      ...(brokers ? { KAFKA_BROKERS: brokers } : {}),
      PORT: '0',
      KEEL_DATA_DIR: mkdtempSync(join(tmpdir(), 'keel-dev-')),
      LOG_LEVEL: 'silent',
    });
    process.env.KEEL_ADMIN_KEY = adminKey;
    // Outside the embedded profile the audit signing key must be configured, not generated.
    process.env.KEEL_AUDIT_SIGNING_KEY = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    server = await startDevServer(config);
  });
  afterAll(async () => {
    await server?.stop();
    delete process.env.KEEL_ADMIN_KEY;
    delete process.env.KEEL_AUDIT_SIGNING_KEY;
  });

  const call = async (method: string, path: string, key: string, body?: unknown, contentType = 'application/json') => {
    const res = await fetch(`${server.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': contentType }) },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };

  it('is live and ready', async () => {
    expect((await fetch(`${server.url}/health`)).status).toBe(200);
    const ready = await fetch(`${server.url}/ready`);
    expect(ready.status).toBe(200);
    expect(((await ready.json()) as { checks: Record<string, string> }).checks.database).toBe('ok');
  });

  it('runs the quick start: tenant, ingest, audit trail, verify, dashboard', async () => {
    const created = await call('POST', '/v1/tenants', adminKey, { name: 'Acme' });
    expect(created.status).toBe(201);
    const tenantId = created.body.tenantId as string;
    const key = created.body.apiKey as string;
    expect(key).toMatch(/^keel_/);

    const ndjson = [
      { source: 'crm', entityType: 'contact', externalId: 'c-1', payload: { name: 'Ada' } },
      { source: 'crm', entityType: 'contact', externalId: 'c-2', payload: { name: 'Bob' } },
      { source: 'crm', entityType: 'contact' },
    ]
      .map((r) => JSON.stringify(r))
      .join('\n');
    const ingest = await call('POST', `/v1/tenants/${tenantId}/ingest`, key, ndjson, 'application/x-ndjson');
    expect(ingest.status).toBe(200);
    expect(ingest.body.accepted).toBe(2);
    expect((ingest.body.rejected as { index: number }[]).map((r) => r.index)).toEqual([2]);
    const position = ingest.body.globalPosition as number;
    expect(position).toBeGreaterThan(0);

    // Read-your-writes on demand: minPosition waits until the projections have caught up.
    const audit = await call('GET', `/v1/tenants/${tenantId}/audit?type=RecordIngested&minPosition=${position}`, key);
    expect(audit.status).toBe(200);
    const items = audit.body.items as { type: string; streamId: string }[];
    expect(items.map((i) => i.streamId).sort()).toEqual([
      `record-${tenantId}-contact-c-1`,
      `record-${tenantId}-contact-c-2`,
    ]);

    const verify = await call('GET', `/v1/tenants/${tenantId}/audit/verify`, key);
    expect(verify.body.ok).toBe(true);
    expect(verify.body.checked as number).toBeGreaterThanOrEqual(3);

    const rates = await call('GET', `/v1/tenants/${tenantId}/dashboard/ingest-rates?minPosition=${position}`, key);
    expect(rates.status).toBe(200);
    const ingested = (rates.body.items as { eventType: string; count: number }[]).filter((r) => r.eventType === 'RecordIngested');
    expect(ingested.reduce((n, r) => n + r.count, 0)).toBe(2);

    const other = await call('POST', '/v1/tenants', adminKey, { name: 'Other' });
    const crossTenant = await call('GET', `/v1/tenants/${other.body.tenantId as string}/audit`, key);
    expect(crossTenant.status).toBe(404);
    expect((crossTenant.body.error as { code: string }).code).toBe('NOT_FOUND');
  });

  it('serves the OpenAPI document of every mounted service', async () => {
    const res = await fetch(`${server.url}/docs/json`);
    const doc = (await res.json()) as { paths: Record<string, unknown> };
    for (const path of [
      '/v1/tenants',
      '/v1/tenants/{tenantId}/ingest',
      '/v1/tenants/{tenantId}/audit',
      '/v1/tenants/{tenantId}/runs/{runId}/events',
    ]) {
      expect(Object.keys(doc.paths)).toContain(path);
    }
  });
}

describe('keel dev (all services in one process, PostgreSQL bus)', () => devServerSuite('postgres'));

// The kafka profile: the relay publishes the store to the real broker and the projectors and
// runners consume from Kafka; the same quick start must hold.
describeWithServer('kafka', 'keel dev (kafka profile: relay → Kafka → projectors)', kafkaBrokers(), kafkaSkipReason(), (brokers) =>
  devServerSuite('kafka', brokers),
);

