import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { uuidv7, type NewEvent } from '@keel/shared-events';
import { outcomeEventId } from '../src/ids.ts';
import { appendOutcomesWith, webhookStream } from '../src/webhooks/runner.ts';
import { createTenant, world, type World } from './harness.ts';

/** Recording outcomes again after a crash, mixed with new ones of the same endpoint, against the real store. */
describe('recording delivery outcomes', () => {
  let w: World;
  beforeAll(async () => {
    w = await world('outcomes');
  });
  afterAll(async () => {
    await w.close();
  });

  const outcome = (tenantId: string, webhookId: string, deliveryId: string, attempt: number): NewEvent => ({
    eventId: outcomeEventId(Date.now(), deliveryId, attempt, 'WebhookDeliverySucceeded'),
    type: 'WebhookDeliverySucceeded',
    tenantId,
    actor: { kind: 'system', id: 'runner-webhooks' },
    data: { webhookId, deliveryId, eventId: uuidv7(), attempt, status: 200, latencyMs: 1 },
  });

  it('a group mixing an already-recorded outcome with new ones stores each exactly once', async () => {
    const tenant = await createTenant(w);
    const webhookId = uuidv7();
    const stream = webhookStream(tenant, webhookId);
    const a = outcome(tenant, webhookId, uuidv7(), 1);
    const b = outcome(tenant, webhookId, uuidv7(), 1);
    const c = outcome(tenant, webhookId, uuidv7(), 2);
    await w.store.appendToStream(stream, [a]);
    await expect(
      w.store.appendBatch([
        { streamId: stream, events: [a] },
        { streamId: stream, events: [b] },
      ]),
    ).rejects.toMatchObject({ code: 'VALIDATION_FAILED' });
    await appendOutcomesWith(w.store, [
      { streamId: stream, events: [a] },
      { streamId: stream, events: [b] },
      { streamId: stream, events: [c] },
    ]);
    const stored = await w.store.readStream(stream);
    expect(stored.map((e) => e.eventId)).toEqual([a.eventId!, b.eventId!, c.eventId!]);
    // and the whole group again is an exact retry
    await appendOutcomesWith(w.store, [
      { streamId: stream, events: [a] },
      { streamId: stream, events: [b] },
    ]);
    expect(await w.store.readStream(stream)).toHaveLength(3);
  });
});
