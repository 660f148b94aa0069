/**
 * `keel`: the all-in-one runner and the operator's tools.
 *
 *   keel dev                                    run Keel (embedded profile by default) on PORT
 *   keel migrate                                apply every package's migrations and exit
 *   keel audit verify --tenant <id>             recompute a tenant's audit hash chain
 *   keel projections rebuild <audit|dashboard>  rebuild a read model into shadow tables, then swap
 *   keel stream show <streamId> [--at <n|ISO>]  a stream's state at a revision or time
 *   keel webhooks redrive --tenant <id> (--delivery <id>... | --webhook <id> --all)
 *   keel webhooks dead --tenant <id> [--webhook <id>]
 *
 * Configuration comes from the environment (README "Configuration").
 */
import { ConfigError, loadBaseConfig } from '@keel/shared-events';
import { auditVerifyCommand, projectionsRebuildCommand, streamShowCommand } from '@keel/projection-service';
import { webhooksDeadCommand, webhooksRedriveCommand } from '@keel/connector-runners';
import { startDevServer } from './dev.ts';
import { createRuntime } from './runtime.ts';

const USAGE = `usage: keel <command>
  dev                                       run Keel on PORT (default 3000)
  migrate                                   apply migrations and exit
  audit verify --tenant <id>                verify a tenant's audit hash chain
  projections rebuild <name>                rebuild a read model (audit, dashboard)
  stream show <streamId> [--at <n|ISO time>]  show a stream's state at a point
  webhooks redrive --tenant <id> (--delivery <id>... | --webhook <id> --all)  redrive dead letters
  webhooks dead --tenant <id> [--webhook <id>]  list dead-lettered deliveries
`;

async function main(argv: string[]): Promise<number> {
  const [command, sub, ...rest] = argv;
  let config;
  try {
    config = loadBaseConfig();
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`${e.message}\n`);
      return 2;
    }
    throw e;
  }
  const say = (line: string) => process.stderr.write(`keel: ${line}\n`);

  if (command === 'dev') {
    const server = await startDevServer(config, { progress: say });
    say(`Keel (${config.profile} profile) listening on ${server.url} — API docs at ${server.url}/docs`);
    let stopping = false;
    const stop = async (signal: string) => {
      if (stopping) return;
      stopping = true;
      say(`${signal}: shutting down`);
      await server.stop();
      process.exit(0);
    };
    process.on('SIGINT', () => void stop('SIGINT'));
    process.on('SIGTERM', () => void stop('SIGTERM'));
    return new Promise<number>(() => undefined);
  }

  const tools: Record<string, (args: string[]) => Promise<number>> = {
    migrate: async () => {
      const runtime = await createRuntime({ config, progress: say });
      await runtime.close();
      return 0;
    },
    'audit verify': (args) => withRuntime((rt) => auditVerifyCommand(rt, args, process.stdout)),
    'projections rebuild': (args) => withRuntime((rt) => projectionsRebuildCommand(rt, args, process.stdout)),
    'stream show': (args) => withRuntime((rt) => streamShowCommand(rt, args, process.stdout)),
    'webhooks redrive': (args) => withRuntime((rt) => webhooksRedriveCommand(rt, args, process.stdout)),
    'webhooks dead': (args) => withRuntime((rt) => webhooksDeadCommand(rt, args, process.stdout)),
  };
  const withRuntime = async (fn: (rt: Awaited<ReturnType<typeof createRuntime>>) => Promise<number>) => {
    const runtime = await createRuntime({ config, progress: () => undefined });
    try {
      return await fn(runtime);
    } finally {
      await runtime.close();
    }
  };
  const tool = tools[`${command} ${sub}`] ?? (command === 'migrate' ? tools.migrate : undefined);
  if (!tool) {
    process.stderr.write(USAGE);
    return command === undefined || command === 'help' || command === '--help' ? 0 : 2;
  }
  return tool(command === 'migrate' ? [sub ?? '', ...rest].filter(Boolean) : rest);
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`keel: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
