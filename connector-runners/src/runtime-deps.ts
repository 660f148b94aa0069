import {
  createAccessGuard,
  createAuthenticator,
  createKeyring,
  isEncryptedField,
  loadAdminKey,
  loadAuthConfig,
  loadMasterKey,
  type AccessGuard,
  type KeelRuntime,
  type Keyring,
} from '@keel/shared-events';
import type { SecretOpener } from './services.ts';

/**
 * What the runners need from the process that hosts them, built from the runtime when the host
 * does not hand it over: the keyring (per-tenant data keys wrapped by KEEL_MASTER_KEY) and the
 * access guard for the routes.
 */
export function keyringFor(runtime: KeelRuntime): Keyring {
  return createKeyring({ pool: runtime.pool, masterKey: loadMasterKey({ dataDir: runtime.config.dataDir }) });
}

/**
 * Secrets arrive as the events carry them: encrypted by the writer (`kenc1:`), decrypted here and
 * only here. A value the writer did not encrypt is used as it is (the event contract allows both).
 */
export function secretOpener(keyring: Keyring): SecretOpener {
  return (tenantId, value) =>
    isEncryptedField(value) ? keyring.decryptField(tenantId, value) : Promise.resolve(value);
}

export function accessGuardFor(runtime: KeelRuntime): AccessGuard {
  const auth = loadAuthConfig();
  const authenticator = createAuthenticator({
    pool: runtime.pool,
    adminKey: loadAdminKey({ dataDir: runtime.config.dataDir }).key,
    cacheTtlMs: auth.cacheTtlMs,
    ...(auth.jwt && { jwt: auth.jwt }),
  });
  return createAccessGuard({ authenticator, store: runtime.store, logger: runtime.logger });
}
