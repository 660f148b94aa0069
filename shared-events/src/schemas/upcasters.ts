import type { EventData } from '../envelope.ts';
import type { RecordIngestedData, RecordIngestedV1Data } from './catalog.ts';
import { canonicalHash } from './canonical-json.ts';

/**
 * Turns the data of `type` at `fromVersion` into its data at `fromVersion + 1`. Pure and
 * deterministic: replaying the same old event must always give the same new event (audit hashes
 * and projections depend on it). The registry chains upcasters up to the newest version.
 */
export interface Upcaster {
  type: string;
  fromVersion: number;
  up(data: EventData): EventData;
}

/** Old records came only through the API; their hash is computed from the stored payload. */
export const recordIngestedV1ToV2: Upcaster = {
  type: 'RecordIngested',
  fromVersion: 1,
  up(data) {
    const v1 = data as RecordIngestedV1Data;
    const v2: RecordIngestedData = {
      source: v1.source,
      entityType: v1.entityType,
      externalId: v1.externalId,
      payload: v1.payload,
      receivedVia: 'api',
      contentHash: canonicalHash(v1.payload),
    };
    return v2;
  },
};

export const upcasters: readonly Upcaster[] = [recordIngestedV1ToV2];
