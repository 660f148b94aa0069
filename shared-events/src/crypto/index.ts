export { seal as aeadSeal, open as aeadOpen } from './aead.ts';
export { loadMasterKey, parseMasterKey, masterKeyId, readOrCreateSecretFile, MASTER_KEY_FILE } from './master-key.ts';
export type { MasterKey } from './master-key.ts';
export { createKeyring, isEncryptedField, KeyDestroyedError, DecryptionError, FIELD_PREFIX } from './keyring.ts';
export type { Keyring, KeyringOptions, FieldOptions } from './keyring.ts';
