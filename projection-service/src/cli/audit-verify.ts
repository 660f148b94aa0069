import type { KeelRuntime } from '@keel/shared-events';
import { verifyTenantChain } from '../audit/verify.ts';
import { loadProjectionConfig } from '../config.ts';
import type { ProjectionConfig } from '../config.ts';
import { flag, has, parseArgs, write } from './args.ts';
import type { CliArgs } from './args.ts';

/**
 * `keel audit verify --tenant <id> [--json]`: recomputes the tenant's hash chain and checks the
 * signed checkpoints. Exit code 0 = intact, 1 = broken (with where), 2 = usage.
 */
export async function auditVerifyCommand(
  runtime: Pick<KeelRuntime, 'pool' | 'config'>,
  args: CliArgs,
  out: NodeJS.WritableStream,
  options: { config?: ProjectionConfig } = {},
): Promise<number> {
  const parsed = parseArgs(args);
  const tenantId = flag(parsed, 'tenant') ?? parsed.positional[0];
  if (!tenantId) {
    write(process.stderr, 'usage: keel audit verify --tenant <tenantId> [--json]');
    return 2;
  }
  const config = options.config ?? loadProjectionConfig(runtime.config);
  const result = await verifyTenantChain(runtime.pool, tenantId, config.keyring);
  if (has(parsed, 'json')) {
    write(out, JSON.stringify(result));
  } else if (result.ok) {
    write(
      out,
      `audit chain of tenant ${tenantId}: OK — ${result.checked} rows, ${result.checkpoints.checked}/${result.checkpoints.total} signed checkpoints verified` +
        (result.head ? ` (head seq ${result.head.seq}, position ${result.head.position})` : ''),
    );
  } else {
    write(
      out,
      `audit chain of tenant ${tenantId}: BROKEN at global position ${result.firstBrokenAt} (chain seq ${result.firstBrokenSeq}): ${result.reason}\n` +
        `  ${result.checked} rows checked; ${result.checkpoints.checked}/${result.checkpoints.total} checkpoints reached`,
    );
  }
  return result.ok ? 0 : 1;
}
