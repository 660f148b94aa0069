import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import avro from 'avsc';
import type { EventData, RecordedEvent } from '../envelope.ts';
import { ValidationError } from '../errors.ts';
import { logicalTypes } from './logical-types.ts';
import type { EventSchemaRegistry } from './registry-port.ts';
import { upcasters as builtInUpcasters, type Upcaster } from './upcasters.ts';

/** One type at one version, as loaded from `<Type>.v<version>.avsc`. */
export interface EventSchema {
  type: string;
  version: number;
  /** The Avro schema as written in the file (a record). */
  schema: avro.schema.RecordType;
  avroType: avro.Type;
  fieldNames: readonly string[];
  /** Fields whose Avro type is a union with null: absent in memory, null on the wire. */
  optionalFields: readonly string[];
  /** Avro-decoded record of this schema → plain data object (optional nulls left out). */
  toPlainData(record: Record<string, unknown>): EventData;
}

/** The registry of the event contract: the port the stores use, plus what the codec needs. */
export interface KeelSchemaRegistry extends EventSchemaRegistry {
  /** Every registered type, sorted. */
  eventTypes(): string[];
  /** Registered versions of `type`, ascending; throws ValidationError (field "type") for an unknown type. */
  versions(type: string): number[];
  /** Throws ValidationError (field "type" or "schemaVersion") when not registered. */
  schemaOf(type: string, schemaVersion: number): EventSchema;
  /** Upcasts bare data (for stores and tools that hold rows rather than envelopes). */
  upcastData(type: string, schemaVersion: number, data: EventData): { schemaVersion: number; data: EventData };
}

export interface SchemaRegistryOptions {
  /** Folder of `<Type>.v<version>.avsc` files; default shared-events/schemas. */
  schemaDir?: string | URL;
  /** Default: the built-in upcasters. Every version below a type's newest needs exactly one. */
  upcasters?: readonly Upcaster[];
}

export const defaultSchemaDir = fileURLToPath(new URL('../../schemas/', import.meta.url));

const FILE_RE = /^([A-Z][A-Za-z0-9]*)\.v([1-9][0-9]*)\.avsc$/;

/**
 * Loads every schema file and checks the catalogue is coherent (names match files, versions
 * are contiguous, each old version has its upcaster) so a broken contract fails at start, not
 * at the first event of an unlucky type.
 */
export function createSchemaRegistry(options: SchemaRegistryOptions = {}): KeelSchemaRegistry {
  const dir = options.schemaDir instanceof URL ? fileURLToPath(options.schemaDir) : (options.schemaDir ?? defaultSchemaDir);
  const byType = new Map<string, Map<number, EventSchema>>();

  for (const file of readdirSync(dir).sort()) {
    if (!file.endsWith('.avsc')) continue;
    const m = FILE_RE.exec(file);
    if (!m) throw new Error(`schema file ${file}: name must be <Type>.v<version>.avsc`);
    const type = m[1]!;
    const version = Number(m[2]);
    const entry = loadSchema(join(dir, file), type, version);
    let versions = byType.get(type);
    if (!versions) byType.set(type, (versions = new Map()));
    versions.set(version, entry);
  }

  const latest = new Map<string, number>();
  for (const [type, versions] of byType) {
    const nums = [...versions.keys()].sort((a, b) => a - b);
    nums.forEach((v, i) => {
      if (i > 0 && v !== nums[i - 1]! + 1) throw new Error(`schemas of ${type}: version ${nums[i - 1]! + 1} is missing`);
    });
    latest.set(type, nums[nums.length - 1]!);
  }

  // upcasterFor.get(type)[fromVersion]
  const upcasterFor = new Map<string, Map<number, Upcaster>>();
  for (const u of options.upcasters ?? builtInUpcasters) {
    const versions = byType.get(u.type);
    if (!versions?.has(u.fromVersion) || !versions.has(u.fromVersion + 1)) {
      throw new Error(`upcaster ${u.type} v${u.fromVersion} → v${u.fromVersion + 1}: no such schema versions`);
    }
    let chain = upcasterFor.get(u.type);
    if (!chain) upcasterFor.set(u.type, (chain = new Map()));
    if (chain.has(u.fromVersion)) throw new Error(`two upcasters for ${u.type} v${u.fromVersion}`);
    chain.set(u.fromVersion, u);
  }
  for (const [type, versions] of byType) {
    for (const v of versions.keys()) {
      if (v < latest.get(type)! && !upcasterFor.get(type)?.has(v)) {
        throw new Error(`${type} v${v} has no upcaster to v${v + 1}`);
      }
    }
  }

  function versionsOf(type: string): Map<number, EventSchema> {
    const versions = byType.get(type);
    if (!versions) throw new ValidationError(`unknown event type "${type}"`, 'type', { field: 'type', value: type });
    return versions;
  }

  function schemaOf(type: string, schemaVersion: number): EventSchema {
    const entry = versionsOf(type).get(schemaVersion);
    if (!entry) {
      throw new ValidationError(`unknown schema version ${String(schemaVersion)} of event type "${type}"`, 'schemaVersion', {
        field: 'schemaVersion',
        value: schemaVersion,
        known: [...versionsOf(type).keys()].sort((a, b) => a - b),
      });
    }
    return entry;
  }

  function upcastData(type: string, schemaVersion: number, data: EventData): { schemaVersion: number; data: EventData } {
    const newest = latestVersion(type);
    if (schemaVersion === newest) return { schemaVersion, data };
    schemaOf(type, schemaVersion); // throws for a version this code does not know (e.g. written by newer code)
    const chain = upcasterFor.get(type)!;
    let out = data;
    for (let v = schemaVersion; v < newest; v++) out = chain.get(v)!.up(out);
    return { schemaVersion: newest, data: out };
  }

  function latestVersion(type: string): number {
    const v = latest.get(type);
    if (v === undefined) versionsOf(type);
    return v!;
  }

  return {
    latestVersion,
    eventTypes: () => [...byType.keys()].sort(),
    versions: (type) => [...versionsOf(type).keys()].sort((a, b) => a - b),
    schemaOf,
    validate(type, schemaVersion, data) {
      validateData(schemaOf(type, schemaVersion), data);
    },
    upcast<E extends RecordedEvent>(event: E): E {
      if (latest.get(event.type) === event.schemaVersion) return event;
      const up = upcastData(event.type, event.schemaVersion, event.data);
      return { ...event, schemaVersion: up.schemaVersion, data: up.data };
    },
    upcastData,
  };
}

let shared: KeelSchemaRegistry | undefined;

/** The registry over shared-events/schemas with the built-in upcasters, loaded once per process. */
export function defaultSchemaRegistry(): KeelSchemaRegistry {
  return (shared ??= createSchemaRegistry());
}

function loadSchema(path: string, type: string, version: number): EventSchema {
  let schema: avro.schema.RecordType;
  try {
    schema = JSON.parse(readFileSync(path, 'utf8')) as avro.schema.RecordType;
  } catch (err) {
    throw new Error(`schema file ${path}: ${(err as Error).message}`);
  }
  if (schema.type !== 'record') throw new Error(`schema file ${path}: must be an Avro record`);
  if (schema.name.split('.').pop() !== type) throw new Error(`schema file ${path}: record name must be ${type}`);
  const avroType = parseEventSchema(schema);
  const fields = (avroType as avro.types.RecordType).fields;
  const fieldNames = fields.map((f) => f.name);
  const optionalFields = fields.filter((f) => avro.Type.isType(f.type, 'union')).map((f) => f.name);
  const optional = new Set(optionalFields);
  return {
    type,
    version,
    schema,
    avroType,
    fieldNames,
    optionalFields,
    toPlainData(record) {
      const out: EventData = {};
      for (const name of fieldNames) {
        const v = record[name];
        if (v === null && optional.has(name)) continue;
        out[name] = v;
      }
      return out;
    },
  };
}

/** avsc options shared by the registry and the codec, so both read the same in-memory values. */
export function parseEventSchema(schema: avro.Schema): avro.Type {
  return avro.Type.forSchema(schema, {
    logicalTypes,
    // Optional fields are ["null", T]: unwrapped, the value is just T or null/absent.
    wrapUnions: 'never',
    omitRecordMethods: true,
    registry: {},
  });
}

/** Throws ValidationError naming the first offending field as `data.<path>`. */
function validateData(entry: EventSchema, data: unknown): void {
  const label = `${entry.type} v${entry.version}`;
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    throw new ValidationError(`data of ${label} must be an object`, 'data', { field: 'data' });
  }
  // Avro would silently drop an undeclared field; refusing it keeps "what you wrote is what you read".
  const rec = data as Record<string, unknown>;
  for (const key of Object.keys(rec)) {
    if (rec[key] !== undefined && !entry.fieldNames.includes(key)) {
      const field = `data.${key}`;
      throw new ValidationError(`${field} is not a field of ${label}`, field, { field, reason: 'unknown field' });
    }
  }
  const problem = findProblem(entry.avroType, data);
  if (problem) {
    const field = ['data', ...problem.path].join('.');
    throw new ValidationError(`${field}: ${problem.message} (${label})`, field, { field, expected: problem.expected });
  }
}

export interface SchemaProblem {
  /** Field path inside the validated value, e.g. ['payload', 'size']. */
  path: string[];
  message: string;
  expected: string;
}

/** The first place where `value` does not match `type`, or undefined when it matches. */
export function findProblem(type: avro.Type, value: unknown): SchemaProblem | undefined {
  if (type.isValid(value)) return undefined;
  let first: SchemaProblem | undefined;
  type.isValid(value, {
    errorHook(path: string[], val: unknown, t: avro.Type) {
      if (first) return;
      const expected = describeType(t);
      const message = val === undefined ? `is required (${expected})` : `expected ${expected}, got ${describeValue(val)}`;
      first = { path, message, expected };
    },
  });
  return first ?? { path: [], message: 'does not match its schema', expected: describeType(type) };
}

function describeType(t: avro.Type): string {
  const name = t.typeName;
  if (avro.Type.isType(t, 'union')) {
    const branches = (t as avro.types.UnwrappedUnionType).types.filter((b: avro.Type) => b.typeName !== 'null');
    return `${branches.map(describeType).join(' or ')} (optional)`;
  }
  switch (name) {
    case 'enum':
      return `one of ${(t as avro.types.EnumType).symbols.join(', ')}`;
    case 'array':
      return `an array of ${describeType((t as avro.types.ArrayType).itemsType)}`;
    case 'record':
      return 'an object';
    case 'int':
      return 'a 32-bit integer';
    case 'long':
      return 'an integer';
    case 'logical:json':
      return 'a JSON value (plain objects, arrays, strings, finite numbers, booleans, null)';
    case 'logical:iso-datetime':
      return 'an ISO-8601 date-time string with zone';
    case 'logical:timestamp-millis':
      return 'a valid Date';
    default:
      return `a ${name}`;
  }
}

function describeValue(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (v instanceof Date) return 'a Date';
  if (typeof v === 'object') return (v as object).constructor?.name === 'Object' ? 'an object' : `a ${(v as object).constructor?.name ?? 'object'}`;
  if (typeof v === 'number' && !Number.isFinite(v)) return String(v);
  if (typeof v === 'number') return Number.isInteger(v) ? `integer ${v}` : `number ${v}`;
  return `a ${typeof v}`;
}
