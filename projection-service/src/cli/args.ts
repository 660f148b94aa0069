/**
 * Arguments of the `keel` sub-commands implemented here. The CLI may hand over the raw words
 * after the command (`['--tenant', 't1']`) or what its own parser made of them
 * (`{ tenant: 't1', _: [] }`); both are accepted.
 */
export type CliArgs = readonly string[] | { readonly [key: string]: unknown; readonly _?: readonly unknown[] };

export interface ParsedArgs {
  positional: string[];
  flags: Map<string, string | true>;
}

export function parseArgs(args: CliArgs): ParsedArgs {
  const flags = new Map<string, string | true>();
  const positional: string[] = [];
  if (Array.isArray(args)) {
    const words = args as readonly string[];
    for (let i = 0; i < words.length; i++) {
      const w = words[i]!;
      if (w.startsWith('--')) {
        const eq = w.indexOf('=');
        if (eq > 0) flags.set(w.slice(2, eq), w.slice(eq + 1));
        else if (i + 1 < words.length && !words[i + 1]!.startsWith('--')) flags.set(w.slice(2), words[++i]!);
        else flags.set(w.slice(2), true);
      } else positional.push(w);
    }
    return { positional, flags };
  }
  const obj = args as { readonly [key: string]: unknown; readonly _?: readonly unknown[] };
  for (const [k, v] of Object.entries(obj)) {
    if (k === '_' || k === '$0' || v === undefined || v === false) continue;
    flags.set(k, v === true ? true : String(v));
  }
  for (const p of obj._ ?? []) positional.push(String(p));
  return { positional, flags };
}

export function flag(parsed: ParsedArgs, name: string): string | undefined {
  const v = parsed.flags.get(name);
  return typeof v === 'string' ? v : undefined;
}

export function has(parsed: ParsedArgs, name: string): boolean {
  return parsed.flags.has(name);
}

export function write(out: NodeJS.WritableStream, text: string): void {
  out.write(text.endsWith('\n') ? text : text + '\n');
}
