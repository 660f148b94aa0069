/**
 * Crash points for the crash-recovery tests: `KEEL_FAILPOINTS=webhook-after-send,sink-after-commit`
 * makes the process kill itself (SIGKILL: no cleanup, exactly like a machine dying) when it reaches
 * a named point. Unset in every real deployment, and then this is one Set lookup.
 */
const active = new Set(
  (process.env.KEEL_FAILPOINTS ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean),
);

export type FailpointName = 'webhook-after-send' | 'step-after-side-effect' | 'intake-after-commit';

export function failpoint(name: FailpointName): void {
  if (active.size && active.has(name)) process.kill(process.pid, 'SIGKILL');
}
