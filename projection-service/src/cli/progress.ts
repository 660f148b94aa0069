import type { RebuildProgress } from '../rebuild/rebuild.ts';

/**
 * A one-line progress bar for long replays: events done, events/s and ETA. On a terminal it
 * redraws in place; otherwise (CI logs, pipes) it prints a line every few seconds.
 */
export function formatDuration(seconds: number | undefined): string {
  if (seconds === undefined || !Number.isFinite(seconds)) return '--';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export function renderProgress(p: RebuildProgress, width = 30): string {
  const fraction = p.headPosition > 0 ? Math.min(1, p.position / p.headPosition) : p.phase === 'done' ? 1 : 0;
  const filled = Math.round(fraction * width);
  const bar = '#'.repeat(filled) + '-'.repeat(width - filled);
  return (
    `${p.projection} [${bar}] ${(fraction * 100).toFixed(1).padStart(5)}%  ` +
    `${p.events.toLocaleString('en-US')} events  ${p.eventsPerSecond.toLocaleString('en-US')} ev/s  ` +
    `ETA ${p.phase === 'replaying' ? formatDuration(p.etaSeconds) : p.phase}`
  );
}

export function progressPrinter(stream: NodeJS.WriteStream | NodeJS.WritableStream, intervalMs = 2000) {
  const tty = 'isTTY' in stream && Boolean((stream as NodeJS.WriteStream).isTTY);
  let last = 0;
  return {
    update(p: RebuildProgress) {
      const now = Date.now();
      if (p.phase === 'replaying' && now - last < (tty ? 100 : intervalMs)) return;
      last = now;
      stream.write(tty ? `\r${renderProgress(p)}\u001b[K` : `${renderProgress(p)}\n`);
    },
    done() {
      if (tty) stream.write('\n');
    },
  };
}
