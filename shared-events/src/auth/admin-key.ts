import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { readOrCreateSecretFile } from '../crypto/master-key.ts';

/**
 * The platform admin key: KEEL_ADMIN_KEY, or generated on first start, kept in the data
 * directory (mode 0600) and printed once by whoever generated it.
 */
export interface AdminKey {
  key: string;
  source: string;
  generated: boolean;
}

export const ADMIN_KEY_FILE = 'admin.key';

export function loadAdminKey(options: { dataDir: string; env?: NodeJS.ProcessEnv }): AdminKey {
  const env = options.env ?? process.env;
  const fromEnv = env.KEEL_ADMIN_KEY;
  if (fromEnv !== undefined && fromEnv !== '') {
    if (fromEnv.length < 24 || /\s/.test(fromEnv)) throw new Error('KEEL_ADMIN_KEY must be at least 24 characters without whitespace');
    return { key: fromEnv, source: 'env', generated: false };
  }
  const path = resolve(options.dataDir, ADMIN_KEY_FILE);
  const { text, generated } = readOrCreateSecretFile(path, () => `keel_admin_${randomBytes(32).toString('hex')}`);
  return { key: text, source: path, generated };
}

/** The once-only banner for a freshly generated admin key (stderr, never the structured log). */
export function adminKeyBanner(admin: AdminKey): string {
  return [
    '',
    '  Keel platform admin key (shown once; kept in ' + admin.source + '):',
    '',
    '    ' + admin.key,
    '',
    '  Set KEEL_ADMIN_KEY to choose your own.',
    '',
  ].join('\n');
}
