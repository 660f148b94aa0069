import { describe, expect, it } from 'vitest';
import { ValidationError } from '@keel/shared-events';
import { parseFlowDefinition, triggerMatches } from '../src/flows/definition.ts';
import { compileExpression, compileMapping, renderTemplate, TransformError } from '../src/flows/transform.ts';
import { canonical, fingerprint, redact, redactHeaders, redactUrl } from '../src/flows/redact.ts';

const event = {
  type: 'RecordIngested',
  tenantId: 't1',
  data: {
    source: 'crm',
    entityType: 'contact',
    externalId: 'c-42',
    payload: { first: 'Ada', last: 'Lovelace', tags: ['a', 'b'], score: 3 },
  },
};

describe('JSONata transform', () => {
  it('evaluates an expression to plain JSON', async () => {
    const e = compileExpression(
      `{ "id": data.externalId, "name": data.payload.first & " " & data.payload.last, "tags": data.payload.tags, "double": data.payload.score * 2 }`,
    );
    expect(await e.evaluate(event)).toEqual({ id: 'c-42', name: 'Ada Lovelace', tags: ['a', 'b'], double: 6 });
  });

  it('a declarative mapping has the same power (each leaf is an expression, nesting builds objects)', async () => {
    const m = compileMapping({
      id: 'data.externalId',
      person: { name: 'data.payload.first & " " & data.payload.last', tagCount: '$count(data.payload.tags)' },
      missing: 'data.nothing',
    });
    expect(await m.evaluate(event)).toEqual({ id: 'c-42', person: { name: 'Ada Lovelace', tagCount: 2 } });
  });

  it('bindings are variables ($trigger, $steps)', async () => {
    const e = compileExpression('$trigger.data.externalId & ":" & $steps[0].n');
    expect(await e.evaluate({}, { trigger: event, steps: [{ n: 1 }] })).toBe('c-42:1');
  });

  it('yields undefined when nothing matches', async () => {
    expect(await compileExpression('data.nope').evaluate(event)).toBeUndefined();
  });

  it('a syntax error is a ValidationError naming the field', () => {
    expect(() => compileExpression('{ "a": ', 'definition.steps.0.expression')).toThrow(ValidationError);
    try {
      compileExpression('{ "a": ', 'definition.steps.0.expression');
    } catch (e) {
      expect((e as ValidationError).field).toBe('definition.steps.0.expression');
    }
  });

  it('a runaway expression is stopped by the guardrails, not left to spin', async () => {
    const e = compileExpression('($f := function($n) { $f($n + 1) }; $f(0))', 'expression', {
      timeoutMs: 200,
      maxDepth: 200,
      maxSequence: 1000,
    });
    await expect(e.evaluate({})).rejects.toBeInstanceOf(TransformError);
    const big = compileExpression('[1..100000]', 'expression', { timeoutMs: 1000, maxDepth: 100, maxSequence: 1000 });
    await expect(big.evaluate({})).rejects.toBeInstanceOf(TransformError);
  });

  it('a type error at run time is a TransformError', async () => {
    await expect(compileExpression('data.payload.first * 2').evaluate(event)).rejects.toBeInstanceOf(TransformError);
  });

  it('URL templates encode values so a record cannot reshape the URL', async () => {
    const url = await renderTemplate(
      'https://api.example.com/contacts/{{ id }}?src={{src}}',
      { id: '../admin?x=1', src: 'a b' },
      { encode: true, field: 'url' },
    );
    expect(url).toBe('https://api.example.com/contacts/..%2Fadmin%3Fx%3D1?src=a%20b');
    await expect(renderTemplate('/x/{{missing}}', {}, { encode: true, field: 'url' })).rejects.toBeInstanceOf(
      TransformError,
    );
  });
});

describe('flow definitions', () => {
  const valid = {
    trigger: { eventType: 'RecordIngested', source: 'crm', entityType: 'contact' },
    steps: [
      { type: 'transform', expression: '{ "id": data.externalId }' },
      { type: 'http', connectorId: 'c1', method: 'put', url: '/contacts/{{id}}' },
      { type: 'postgres', connectorId: 'c2', table: 'contacts', key: ['id'] },
    ],
  };

  it('parses a valid definition (methods upper-cased, POST by default)', () => {
    const d = parseFlowDefinition(valid);
    expect(d.steps[1]).toEqual({ type: 'http', connectorId: 'c1', method: 'PUT', url: '/contacts/{{id}}' });
    expect(
      parseFlowDefinition({ ...valid, steps: [{ type: 'http', connectorId: 'c', url: 'https://x' }] }).steps[0],
    ).toMatchObject({ method: 'POST' });
  });

  it.each([
    [{ ...valid, extra: 1 }, 'definition.extra'],
    [{ ...valid, trigger: {} }, 'definition.trigger.eventType'],
    [{ ...valid, steps: [] }, 'definition.steps'],
    [{ ...valid, steps: [{ type: 'shell' }] }, 'definition.steps.0.type'],
    [{ ...valid, steps: [{ type: 'transform' }] }, 'definition.steps.0'],
    [{ ...valid, steps: [{ type: 'transform', expression: 'a', mapping: { a: 'b' } }] }, 'definition.steps.0'],
    [
      { ...valid, steps: [{ type: 'http', connectorId: 'c', url: '/x', method: 'TRACE' }] },
      'definition.steps.0.method',
    ],
    [
      { ...valid, steps: [{ type: 'postgres', connectorId: 'c', table: 'x; drop table y', key: ['id'] }] },
      'definition.steps.0.table',
    ],
    [{ ...valid, steps: [{ type: 'postgres', connectorId: 'c', table: 'x', key: [] }] }, 'definition.steps.0.key'],
    [
      { ...valid, steps: [{ type: 'postgres', connectorId: 'c', table: 'x', key: ['id'], columns: ['name'] }] },
      'definition.steps.0.columns',
    ],
    [{ ...valid, retry: { maxAttempts: 0 } }, 'definition.retry.maxAttempts'],
  ])('refuses %j naming %s', (raw, field) => {
    try {
      parseFlowDefinition(raw);
      throw new Error('accepted');
    } catch (e) {
      expect(e).toBeInstanceOf(ValidationError);
      expect((e as ValidationError).field).toBe(field);
    }
  });

  it('trigger matching by event type, source and entity type', () => {
    const t = parseFlowDefinition(valid).trigger;
    expect(triggerMatches(t, event)).toBe(true);
    expect(triggerMatches(t, { ...event, type: 'TenantCreated' })).toBe(false);
    expect(triggerMatches(t, { ...event, data: { ...event.data, source: 'erp' } })).toBe(false);
    expect(triggerMatches(t, { ...event, data: { ...event.data, entityType: 'deal' } })).toBe(false);
    expect(triggerMatches({ eventType: 'RecordIngested' }, { ...event, data: { ...event.data, source: 'erp' } })).toBe(
      true,
    );
  });
});

describe('redaction', () => {
  it('blanks secret-looking fields, headers and query values', () => {
    expect(redact({ name: 'x', password: 'p', nested: { apiKey: 'k', list: [{ token: 't', ok: 1 }] } })).toEqual({
      name: 'x',
      password: '[redacted]',
      nested: { apiKey: '[redacted]', list: [{ token: '[redacted]', ok: 1 }] },
    });
    expect(redactHeaders({ authorization: 'Bearer x', 'x-api-key': 'k', 'content-type': 'a/b' })).toEqual({
      authorization: '[redacted]',
      'x-api-key': '[redacted]',
      'content-type': 'a/b',
    });
    expect(redactUrl('https://u:p@h.example/x?api_key=s&q=1')).toBe('https://h.example/x?api_key=%5Bredacted%5D&q=1');
  });

  it('fingerprints ignore key order', () => {
    expect(canonical({ b: 1, a: [{ d: 1, c: 2 }] })).toBe('{"a":[{"c":2,"d":1}],"b":1}');
    expect(fingerprint({ a: 1, b: 2 })).toBe(fingerprint({ b: 2, a: 1 }));
    expect(fingerprint({ a: 1 })).not.toBe(fingerprint({ a: 2 }));
  });
});
