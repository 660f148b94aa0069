#!/usr/bin/env node
// The dev/CI Kafka broker: a real single-node KRaft broker from Maven Central jars.
//
//   node infra/kafka/kafka.mjs up       start it (fetch jars, format storage once) and wait until ready
//   node infra/kafka/kafka.mjs down     stop it (SIGTERM, then SIGKILL after 30 s)
//   node infra/kafka/kafka.mjs status   print whether it runs (exit 0 if ready, 1 if not)
//   node infra/kafka/kafka.mjs restart  down + up on the same data
//   node infra/kafka/kafka.mjs reset    down + delete its data dir
//   node infra/kafka/kafka.mjs jars     only fetch the jars (e.g. to warm a CI cache)
//   node infra/kafka/kafka.mjs logs [N] print the last N (default 100) lines of its log
//
// Environment: KAFKA_PORT (19092), KAFKA_CONTROLLER_PORT (19093), KAFKA_DATA_DIR
// (infra/kafka/.cache/data-<port>), KAFKA_JAVA_OPTS, KAFKA_READY_TIMEOUT_MS (120000),
// KAFKA_LIB_DIR, KAFKA_MVN, KAFKA_MVN_ARGS, JAVA_HOME. See infra/kafka/README.md.

import console from 'node:console';
import process from 'node:process';

import { brokerStatus, ensureJars, logTail, resetBroker, restartBroker, startBroker, stopBroker } from './broker.mjs';

const [cmd = 'help', arg] = process.argv.slice(2);

async function main() {
  switch (cmd) {
    case 'up':
    case 'start': {
      const t0 = Date.now();
      const b = await startBroker();
      const s = ((Date.now() - t0) / 1000).toFixed(1);
      console.log(
        b.alreadyRunning
          ? `Kafka already running at ${b.brokers} (pid ${b.pid}) and ready`
          : `Kafka up at ${b.brokers} (pid ${b.pid}) in ${s} s; log: ${b.logFile}`,
      );
      console.log(`KAFKA_BROKERS=${b.brokers}`);
      return 0;
    }
    case 'down':
    case 'stop': {
      const r = await stopBroker();
      console.log(r.stopped ? `Kafka stopped (pid ${r.pid}${r.forced ? ', killed' : ''})` : 'Kafka was not running');
      return 0;
    }
    case 'restart': {
      const b = await restartBroker();
      console.log(`Kafka restarted at ${b.brokers} (pid ${b.pid})`);
      return 0;
    }
    case 'status': {
      const s = await brokerStatus();
      if (!s.running) console.log(`Kafka not running (${s.brokers}, data ${s.dataDir})`);
      else
        console.log(
          `Kafka running at ${s.brokers} (pid ${s.pid}), ${s.ready ? `ready, cluster ${s.clusterId}` : 'NOT answering'}; ` +
            `data ${s.dataDir}; log ${s.logFile}`,
        );
      return s.running && s.ready ? 0 : 1;
    }
    case 'reset': {
      const r = await resetBroker();
      console.log(`Kafka stopped and ${r.removed} removed`);
      return 0;
    }
    case 'jars': {
      const r = await ensureJars();
      console.log(
        `${r.fetched ? 'fetched' : 'cached'}: ${r.libDir}${r.fetched ? ` (${(r.ms / 1000).toFixed(1)} s)` : ''}`,
      );
      return 0;
    }
    case 'logs': {
      console.log(logTail({}, Number(arg) || 100));
      return 0;
    }
    default:
      console.log('usage: node infra/kafka/kafka.mjs up|down|status|restart|reset|jars|logs [N]');
      return cmd === 'help' || cmd === '--help' || cmd === '-h' ? 0 : 2;
  }
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`[kafka] ${cmd} failed: ${err?.message ?? err}`);
    process.exit(1);
  },
);
