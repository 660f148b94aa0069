// A real, single-node Apache Kafka broker (KRaft, combined broker+controller) for dev and CI,
// assembled from Maven Central jars — no Docker, no Kafka distribution download.
//
// Plain Node ESM with no dependencies, so it runs before (and without) a TypeScript build.
// Used by infra/kafka/kafka.mjs (the `up` / `down` / `status` CLI) and imported by the test
// global setup, which may also stop and restart the broker in the middle of a test.
//
//   import { startBroker, stopBroker, restartBroker } from '../infra/kafka/broker.mjs';
//   const kafka = await startBroker();          // { brokers: '127.0.0.1:19092', pid, stop(), ... }
//   await restartBroker({ signal: 'SIGKILL' });  // crash it and bring it back on the same data
//   await kafka.stop();
//
// See infra/kafka/README.md for the environment variables.

import { Buffer } from 'node:buffer';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { connect } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import process from 'node:process';
import { setImmediate, setTimeout } from 'node:timers';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const KAFKA_DIR = dirname(fileURLToPath(import.meta.url));
export const CACHE_DIR = join(KAFKA_DIR, '.cache');
export const POM_FILE = join(KAFKA_DIR, 'pom.xml');
export const LOG4J_FILE = join(KAFKA_DIR, 'log4j.properties');
export const HOST = '127.0.0.1';
export const DEFAULT_PORT = 19092;
export const DEFAULT_CONTROLLER_PORT = 19093;
export const DEFAULT_JAVA_OPTS = [
  '-Xms256m',
  '-Xmx512m',
  '-XX:+UseG1GC',
  '-XX:MaxGCPauseMillis=20',
  '-XX:InitiatingHeapOccupancyPercent=35',
  '-XX:+ExitOnOutOfMemoryError',
  '-Djava.awt.headless=true',
];

const STAMP_FILE = '.keel-jars.json';
const MAX_LOG_BYTES = 20 * 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// configuration

function envInt(name) {
  const v = process.env[name];
  if (v === undefined || v === '') return undefined;
  const n = Number.parseInt(v, 10);
  if (!Number.isInteger(n) || n <= 0 || n > 65535) throw new Error(`${name}=${v} is not a valid port`);
  return n;
}

/**
 * Resolves options (then env, then defaults) into the broker's full configuration.
 * @param {{port?: number, controllerPort?: number, dataDir?: string, readyTimeoutMs?: number,
 *          javaOpts?: string[], properties?: Record<string, string|number|boolean>, quiet?: boolean}} [opts]
 */
export function resolveConfig(opts = {}) {
  const port = opts.port ?? envInt('KAFKA_PORT') ?? DEFAULT_PORT;
  const controllerPort =
    opts.controllerPort ??
    envInt('KAFKA_CONTROLLER_PORT') ??
    (port === DEFAULT_PORT ? DEFAULT_CONTROLLER_PORT : port + 1);
  if (port === controllerPort) throw new Error(`broker port and controller port are both ${port}`);
  const dataDir = resolve(opts.dataDir ?? process.env.KAFKA_DATA_DIR ?? join(CACHE_DIR, `data-${port}`));
  const readyTimeoutMs = opts.readyTimeoutMs ?? (Number(process.env.KAFKA_READY_TIMEOUT_MS) || 120_000);
  const javaOpts =
    opts.javaOpts ??
    (process.env.KAFKA_JAVA_OPTS ? process.env.KAFKA_JAVA_OPTS.trim().split(/\s+/) : DEFAULT_JAVA_OPTS);
  return {
    host: HOST,
    port,
    controllerPort,
    brokers: `${HOST}:${port}`,
    dataDir,
    logDir: join(dataDir, 'kraft-logs'),
    configFile: join(dataDir, 'server.properties'),
    pidFile: join(dataDir, 'kafka.pid'),
    logFile: join(dataDir, 'kafka.log'),
    libDir: libDir(),
    readyTimeoutMs,
    javaOpts,
    properties: opts.properties ?? {},
    quiet: opts.quiet ?? false,
  };
}

function libDir() {
  return resolve(process.env.KAFKA_LIB_DIR || join(CACHE_DIR, 'lib'));
}

function javaBin() {
  return process.env.JAVA_HOME ? join(process.env.JAVA_HOME, 'bin', 'java') : 'java';
}

function log(cfg, msg) {
  if (!cfg?.quiet) process.stderr.write(`[kafka] ${msg}\n`);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// jars

function pomHash() {
  return createHash('sha256').update(readFileSync(POM_FILE)).digest('hex').slice(0, 16);
}

function jarsPresent(dir, hash) {
  try {
    if (!existsSync(join(dir, STAMP_FILE))) return false;
    const stamp = JSON.parse(readFileSync(join(dir, STAMP_FILE), 'utf8'));
    if (hash && stamp.pom !== hash) return false;
    return readdirSync(dir).some((f) => /^kafka_2\.13-.*\.jar$/.test(f));
  } catch {
    return false;
  }
}

function run(cmd, args, { cwd, env } = {}) {
  return new Promise((resolvePromise) => {
    let out = '';
    let child;
    try {
      child = spawn(cmd, args, { cwd, env: env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (err) {
      resolvePromise({ code: -1, out: String(err) });
      return;
    }
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('error', (err) => resolvePromise({ code: -1, out: out + String(err) }));
    child.on('close', (code) => resolvePromise({ code: code ?? -1, out }));
  });
}

async function withLock(lockDir, fn) {
  const deadline = Date.now() + 15 * 60_000;
  for (;;) {
    try {
      mkdirSync(lockDir);
      writeFileSync(join(lockDir, 'pid'), String(process.pid));
      break;
    } catch (err) {
      if (err.code !== 'EEXIST') throw err;
      let holder = 0;
      try {
        holder = Number(readFileSync(join(lockDir, 'pid'), 'utf8'));
      } catch {
        /* being created or removed */
      }
      let stale = holder > 0 && !pidAlive(holder);
      try {
        stale ||= Date.now() - statSync(lockDir).mtimeMs > 15 * 60_000;
      } catch {
        continue;
      }
      if (stale) {
        rmSync(lockDir, { recursive: true, force: true });
        continue;
      }
      if (Date.now() > deadline) throw new Error(`timed out waiting for lock ${lockDir}`);
      await sleep(500);
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(lockDir, { recursive: true, force: true });
  }
}

/**
 * Makes sure the Kafka jars are in the lib dir (infra/kafka/.cache/lib, or $KAFKA_LIB_DIR).
 * With KAFKA_LIB_DIR set (e.g. to a Kafka distribution's libs/) Maven is never run.
 * Otherwise Maven copies kafka_2.13 and its runtime dependencies there, once: a stamp file
 * keyed on pom.xml marks a complete copy. Maven is tried offline first (everything already in
 * ~/.m2), then online, then once more.
 * @param {{quiet?: boolean}} [opts]
 * @returns {Promise<{libDir: string, fetched: boolean, ms: number}>}
 */
export async function ensureJars(opts = {}) {
  const t0 = Date.now();
  const dir = libDir();
  if (process.env.KAFKA_LIB_DIR) {
    if (!readdirSync(dir).some((f) => /^kafka_2\.1\d-.*\.jar$/.test(f)))
      throw new Error(`KAFKA_LIB_DIR=${dir} holds no kafka_2.1x-*.jar`);
    return { libDir: dir, fetched: false, ms: 0 };
  }
  const hash = pomHash();
  if (jarsPresent(dir, hash)) return { libDir: dir, fetched: false, ms: Date.now() - t0 };
  mkdirSync(CACHE_DIR, { recursive: true });
  return withLock(join(CACHE_DIR, 'lib.lock'), async () => {
    if (jarsPresent(dir, hash)) return { libDir: dir, fetched: false, ms: Date.now() - t0 };
    log(opts, `fetching Kafka jars with Maven into ${dir} (once; cached afterwards)`);
    const tmp = `${dir}.tmp-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    const mvn = process.env.KAFKA_MVN || 'mvn';
    const extra = process.env.KAFKA_MVN_ARGS ? process.env.KAFKA_MVN_ARGS.trim().split(/\s+/) : [];
    const base = ['-q', '-B', ...extra, '-f', POM_FILE, 'dependency:copy-dependencies', `-Dcache.lib=${tmp}`];
    const attempts = [['-o', ...base], base, base];
    let last = { code: -1, out: '' };
    for (const [i, args] of attempts.entries()) {
      if (i === 2) await sleep(3000);
      last = await run(mvn, args, { cwd: KAFKA_DIR });
      if (last.code === 0 && readdirSync(tmp, { withFileTypes: true }).length > 0) break;
      rmSync(tmp, { recursive: true, force: true });
    }
    if (last.code !== 0) {
      throw new Error(
        `could not fetch the Kafka jars with Maven (${mvn} exited ${last.code}). ` +
          `Is Maven installed and Maven Central reachable? Output:\n${last.out.slice(-4000)}`,
      );
    }
    writeFileSync(
      join(tmp, STAMP_FILE),
      JSON.stringify({ pom: hash, at: new Date().toISOString(), jars: readdirSync(tmp).sort() }, null, 2),
    );
    rmSync(dir, { recursive: true, force: true });
    renameSync(tmp, dir);
    const ms = Date.now() - t0;
    log(opts, `Kafka jars ready (${readdirSync(dir).length - 1} jars, ${(ms / 1000).toFixed(1)} s)`);
    return { libDir: dir, fetched: true, ms };
  });
}

// ---------------------------------------------------------------------------------------------
// process bookkeeping

function pidAlive(pid) {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return err.code === 'EPERM';
  }
  try {
    // a dead child that was not reaped yet still answers kill(pid, 0)
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    if (state === 'Z' || state === 'X') return false;
  } catch {
    /* no procfs (macOS): trust kill(0) */
  }
  return true;
}

function isOurBroker(pid, cfg) {
  if (!pidAlive(pid)) return false;
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return cmdline.includes('kafka.Kafka') && cmdline.includes(cfg.configFile);
  } catch {
    return true; // no procfs: a live pid from our pid file is assumed to be ours
  }
}

function readPid(cfg) {
  try {
    const pid = Number.parseInt(readFileSync(cfg.pidFile, 'utf8').trim(), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Pid of the broker for these options if it is running, else undefined (a stale pid file is removed). */
export function runningPid(opts = {}) {
  const cfg = opts.pidFile ? opts : resolveConfig(opts);
  const pid = readPid(cfg);
  if (pid === undefined) return undefined;
  if (isOurBroker(pid, cfg)) return pid;
  rmSync(cfg.pidFile, { force: true });
  return undefined;
}

/** The last `lines` lines of the broker's log file. */
export function logTail(opts = {}, lines = 60) {
  const cfg = opts.logFile ? opts : resolveConfig(opts);
  try {
    const text = readFileSync(cfg.logFile, 'utf8');
    return text
      .split('\n')
      .slice(-lines - 1)
      .join('\n');
  } catch {
    return '(no log file)';
  }
}

function portInUse(host, port, timeoutMs = 1000) {
  return new Promise((resolvePromise) => {
    const sock = connect({ host, port });
    const done = (v) => {
      sock.destroy();
      resolvePromise(v);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

async function waitPortsFree(cfg, ms) {
  const until = Date.now() + ms;
  for (;;) {
    const busy = [];
    for (const p of [cfg.port, cfg.controllerPort]) if (await portInUse(cfg.host, p, 500)) busy.push(p);
    if (busy.length === 0 || Date.now() > until) return busy.length === 0;
    await sleep(100);
  }
}

// ---------------------------------------------------------------------------------------------
// readiness: a raw Kafka Metadata (v4) request over TCP

/**
 * Sends one Metadata v4 request (no topics) and resolves with the cluster's view, or rejects.
 * A broker that answers with at least one live broker is ready for clients.
 * @returns {Promise<{brokers: {nodeId: number, host: string, port: number}[], clusterId: string|null, controllerId: number}>}
 */
export function kafkaMetadata(host = HOST, port = DEFAULT_PORT, timeoutMs = 3000) {
  return new Promise((resolvePromise, reject) => {
    const clientId = Buffer.from('keel-kafka-probe');
    const body = Buffer.alloc(2 + 2 + 4 + 2 + clientId.length + 4 + 1);
    let o = 0;
    o = body.writeInt16BE(3, o); // api_key: Metadata
    o = body.writeInt16BE(4, o); // api_version 4 (non-flexible; served by Kafka 0.11 .. 4.x)
    o = body.writeInt32BE(1, o); // correlation_id
    o = body.writeInt16BE(clientId.length, o);
    o += clientId.copy(body, o);
    o = body.writeInt32BE(0, o); // topics: [] (none)
    body.writeInt8(0, o); // allow_auto_topic_creation: false
    const frame = Buffer.alloc(4 + body.length);
    frame.writeInt32BE(body.length, 0);
    body.copy(frame, 4);

    const sock = connect({ host, port });
    let buf = Buffer.alloc(0);
    let settled = false;
    const finish = (err, value) => {
      if (settled) return;
      settled = true;
      sock.destroy();
      if (err) reject(err);
      else resolvePromise(value);
    };
    sock.setTimeout(timeoutMs, () => finish(new Error('metadata request timed out')));
    sock.once('error', (err) => finish(err));
    sock.once('close', () => finish(new Error('connection closed before a metadata response')));
    sock.once('connect', () => sock.write(frame));
    sock.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      if (buf.length < 4) return;
      const size = buf.readInt32BE(0);
      if (buf.length < 4 + size) return;
      try {
        let p = 4;
        const correlationId = buf.readInt32BE(p);
        p += 4;
        if (correlationId !== 1) throw new Error(`unexpected correlation id ${correlationId}`);
        p += 4; // throttle_time_ms
        const readStr = () => {
          const len = buf.readInt16BE(p);
          p += 2;
          if (len < 0) return null;
          const s = buf.toString('utf8', p, p + len);
          p += len;
          return s;
        };
        const n = buf.readInt32BE(p);
        p += 4;
        const brokers = [];
        for (let i = 0; i < n; i++) {
          const nodeId = buf.readInt32BE(p);
          p += 4;
          const bhost = readStr();
          const bport = buf.readInt32BE(p);
          p += 4;
          readStr(); // rack
          brokers.push({ nodeId, host: bhost, port: bport });
        }
        const clusterId = readStr();
        const controllerId = buf.readInt32BE(p);
        finish(null, { brokers, clusterId, controllerId });
      } catch (err) {
        finish(err);
      }
    });
  });
}

/**
 * Polls until the broker answers a Metadata request listing itself, or throws after timeoutMs
 * (with the log tail). Fails fast when `pid` is given and that process dies.
 */
export async function waitForReady(opts = {}) {
  const cfg = opts.pidFile ? opts : resolveConfig(opts);
  const timeoutMs = opts.timeoutMs ?? cfg.readyTimeoutMs;
  const deadline = Date.now() + timeoutMs;
  let lastErr;
  let delay = 100;
  while (Date.now() < deadline) {
    if (opts.pid !== undefined && !pidAlive(opts.pid)) {
      throw new Error(`Kafka (pid ${opts.pid}) exited during startup. Last lines of ${cfg.logFile}:\n${logTail(cfg)}`);
    }
    try {
      const md = await kafkaMetadata(cfg.host, cfg.port, 2000);
      if (md.brokers.length > 0) return md;
      lastErr = new Error('metadata lists no live broker yet');
    } catch (err) {
      lastErr = err;
    }
    await sleep(delay);
    delay = Math.min(delay * 2, 500);
  }
  throw new Error(
    `Kafka at ${cfg.brokers} not ready after ${Math.round(timeoutMs / 1000)} s (${lastErr?.message}). ` +
      `Last lines of ${cfg.logFile}:\n${logTail(cfg)}`,
  );
}

// ---------------------------------------------------------------------------------------------
// server.properties, storage format, start, stop

function serverProperties(cfg) {
  const p = {
    // KRaft, one node that is both broker and controller
    'process.roles': 'broker,controller',
    'node.id': 1,
    'controller.quorum.voters': `1@${cfg.host}:${cfg.controllerPort}`,
    listeners: `PLAINTEXT://${cfg.host}:${cfg.port},CONTROLLER://${cfg.host}:${cfg.controllerPort}`,
    'advertised.listeners': `PLAINTEXT://${cfg.host}:${cfg.port}`,
    'listener.security.protocol.map': 'PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT',
    'inter.broker.listener.name': 'PLAINTEXT',
    'controller.listener.names': 'CONTROLLER',
    'log.dirs': cfg.logDir,
    // sized for tests on a small machine
    'num.network.threads': 2,
    'num.io.threads': 4,
    'num.recovery.threads.per.data.dir': 2,
    'background.threads': 4,
    // topics: created up front by the code under test
    'auto.create.topics.enable': false,
    'delete.topic.enable': true,
    'num.partitions': 12,
    'default.replication.factor': 1,
    'min.insync.replicas': 1,
    // internal topics of a single node
    'offsets.topic.replication.factor': 1,
    'offsets.topic.num.partitions': 12,
    'transaction.state.log.replication.factor': 1,
    'transaction.state.log.min.isr': 1,
    'transaction.state.log.num.partitions': 12,
    // consumer groups settle at once
    'group.initial.rebalance.delay.ms': 0,
    // After a crash (SIGKILL) the controller keeps the dead incarnation's session alive for
    // broker.session.timeout.ms (default 9 s) and refuses the restarted broker's registration
    // (DUPLICATE_BROKER_REGISTRATION) until then: shorter, so crash-restart tests come back in ~4 s.
    'broker.session.timeout.ms': 3000,
    'broker.heartbeat.interval.ms': 500,
    ...cfg.properties,
  };
  return (
    '# Written by infra/kafka/broker.mjs on every start; edit broker.mjs (or pass `properties`) instead.\n' +
    Object.entries(p)
      .map(([k, v]) => `${k}=${v}`)
      .join('\n') +
    '\n'
  );
}

function javaArgs(cfg, mainClass, args) {
  return [
    `-Dlog4j.configuration=${pathToFileURL(LOG4J_FILE).href}`,
    `-Dkafka.logs.dir=${cfg.dataDir}`,
    '-cp',
    `${cfg.libDir}/*`,
    mainClass,
    ...args,
  ];
}

async function formatStorage(cfg) {
  if (existsSync(join(cfg.logDir, 'meta.properties'))) return false;
  const clusterId = randomBytes(16).toString('base64url'); // a Kafka Uuid: 22 chars
  const res = await run(
    javaBin(),
    [
      '-Xmx256m',
      ...javaArgs(cfg, 'kafka.tools.StorageTool', [
        'format',
        '--config',
        cfg.configFile,
        '--cluster-id',
        clusterId,
        '--ignore-formatted',
      ]),
    ],
    {},
  );
  if (res.code === -1 && /ENOENT/.test(res.out)) {
    throw new Error(
      `${javaBin()} not found: Kafka needs a JDK or JRE 17+ (Debian: apt-get install openjdk-17-jre-headless)`,
    );
  }
  if (res.code !== 0) throw new Error(`kafka StorageTool format failed (exit ${res.code}):\n${res.out}`);
  log(cfg, `formatted ${cfg.logDir} (cluster id ${clusterId})`);
  return true;
}

function rotateLog(cfg) {
  try {
    if (statSync(cfg.logFile).size > MAX_LOG_BYTES) renameSync(cfg.logFile, `${cfg.logFile}.1`);
  } catch {
    /* no log yet */
  }
}

function handle(cfg, pid, alreadyRunning) {
  const opts = {
    port: cfg.port,
    controllerPort: cfg.controllerPort,
    dataDir: cfg.dataDir,
    readyTimeoutMs: cfg.readyTimeoutMs,
    javaOpts: cfg.javaOpts,
    properties: cfg.properties,
    quiet: cfg.quiet,
  };
  return {
    brokers: cfg.brokers,
    host: cfg.host,
    port: cfg.port,
    controllerPort: cfg.controllerPort,
    dataDir: cfg.dataDir,
    logFile: cfg.logFile,
    pid,
    alreadyRunning,
    /** Stops this broker (SIGTERM, then SIGKILL after timeoutMs; signal 'SIGKILL' to crash it). */
    stop: (o = {}) => stopBroker({ ...opts, ...o }),
    /** Stops and starts it again on the same data; resolves with the new handle. */
    restart: (o = {}) => restartBroker({ ...opts, ...o }),
  };
}

/**
 * Starts the broker (fetching jars and formatting storage first when needed) and resolves when
 * it serves clients. If it is already running for these options it is only checked for readiness
 * and `alreadyRunning` is true (a caller that did not start it may choose not to stop it).
 * @param {{port?: number, controllerPort?: number, dataDir?: string, readyTimeoutMs?: number,
 *          javaOpts?: string[], properties?: Record<string, string|number|boolean>, quiet?: boolean}} [opts]
 * @returns {Promise<{brokers: string, host: string, port: number, controllerPort: number, dataDir: string,
 *          logFile: string, pid: number, alreadyRunning: boolean,
 *          stop(o?: {signal?: 'SIGTERM'|'SIGKILL', timeoutMs?: number}): Promise<{stopped: boolean, pid?: number, forced?: boolean}>,
 *          restart(o?: object): Promise<object>}>}
 */
export async function startBroker(opts = {}) {
  const cfg = resolveConfig(opts);
  const existing = runningPid(cfg);
  if (existing !== undefined) {
    await waitForReady({ ...cfg, pid: existing });
    return handle(cfg, existing, true);
  }
  mkdirSync(cfg.dataDir, { recursive: true });
  // Two concurrent starts on one data dir: the second waits, then finds the first one's broker.
  const started = await withLock(join(cfg.dataDir, 'start.lock'), async () => {
    const pid = runningPid(cfg);
    if (pid !== undefined) return { pid, alreadyRunning: true };
    await waitPortsFree(cfg, 5000);
    for (const p of [cfg.port, cfg.controllerPort]) {
      if (await portInUse(cfg.host, p)) {
        throw new Error(
          `port ${cfg.host}:${p} is already in use by another process (not a broker started from ${cfg.dataDir}); ` +
            `set KAFKA_PORT / KAFKA_CONTROLLER_PORT, or stop it`,
        );
      }
    }
    await ensureJars(cfg);
    writeFileSync(cfg.configFile, serverProperties(cfg));
    await formatStorage(cfg);

    rotateLog(cfg);
    const out = openSync(cfg.logFile, 'a');
    let child;
    try {
      writeFileSync(out, `\n==== ${new Date().toISOString()} starting Kafka on ${cfg.brokers} ====\n`);
      child = spawn(javaBin(), [...cfg.javaOpts, ...javaArgs(cfg, 'kafka.Kafka', [cfg.configFile])], {
        cwd: cfg.dataDir,
        detached: true,
        stdio: ['ignore', out, out],
      });
    } finally {
      closeSync(out);
    }
    const spawnError = new Promise((_, reject) => child.once('error', reject));
    spawnError.catch(() => {});
    try {
      await Promise.race([new Promise((r) => setImmediate(r)), spawnError]);
    } catch (err) {
      throw new Error(`could not start ${javaBin()} (${err.code ?? err.message}): Kafka needs a JDK or JRE 17+`);
    }
    if (!child.pid) throw new Error(`could not start ${javaBin()}: Kafka needs a JDK or JRE 17+`);
    child.unref();
    writeFileSync(cfg.pidFile, `${child.pid}\n`);
    return { pid: child.pid, alreadyRunning: false };
  });

  const t0 = Date.now();
  try {
    await waitForReady({ ...cfg, pid: started.pid });
  } catch (err) {
    if (!started.alreadyRunning) {
      if (pidAlive(started.pid)) await stopBroker({ ...opts, quiet: true, timeoutMs: 5000 });
      rmSync(cfg.pidFile, { force: true });
    }
    throw err;
  }
  if (!started.alreadyRunning) {
    log(
      cfg,
      `ready at ${cfg.brokers} in ${((Date.now() - t0) / 1000).toFixed(1)} s (pid ${started.pid}, log ${cfg.logFile})`,
    );
  }
  return handle(cfg, started.pid, started.alreadyRunning);
}

/**
 * Stops the broker for these options: `signal` (default SIGTERM, a clean shutdown; SIGKILL
 * simulates a crash), then SIGKILL if it has not exited after timeoutMs (default 30 s).
 * Resolves once the process is gone and its pid file removed.
 * @param {{port?: number, controllerPort?: number, dataDir?: string, signal?: 'SIGTERM'|'SIGKILL',
 *          timeoutMs?: number, quiet?: boolean}} [opts]
 * @returns {Promise<{stopped: boolean, pid?: number, forced?: boolean}>}
 */
export async function stopBroker(opts = {}) {
  const cfg = resolveConfig(opts);
  const pid = runningPid(cfg);
  if (pid === undefined) {
    rmSync(cfg.pidFile, { force: true });
    return { stopped: false };
  }
  const signal = opts.signal ?? 'SIGTERM';
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const gone = async (ms) => {
    const until = Date.now() + ms;
    while (Date.now() < until) {
      if (!pidAlive(pid)) return true;
      await sleep(100);
    }
    return !pidAlive(pid);
  };
  let forced = signal === 'SIGKILL';
  try {
    process.kill(pid, signal);
  } catch {
    /* already gone */
  }
  if (!(await gone(timeoutMs))) {
    log(cfg, `pid ${pid} did not stop within ${timeoutMs} ms; sending SIGKILL`);
    forced = true;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
    if (!(await gone(10_000))) throw new Error(`Kafka pid ${pid} survived SIGKILL`);
  }
  // A killed JVM's leader thread turns zombie while its other threads still hold the sockets:
  // wait until the ports refuse connections, so that an immediate restart can bind them.
  await waitPortsFree(cfg, 15_000);
  rmSync(cfg.pidFile, { force: true });
  log(cfg, `stopped (pid ${pid}${forced ? ', killed' : ''})`);
  return { stopped: true, pid, forced };
}

/**
 * Stops the broker (see stopBroker: `signal: 'SIGKILL'` for a crash), optionally stays down
 * for `downMs`, then starts it again on the same data dir and ports.
 */
export async function restartBroker(opts = {}) {
  await stopBroker(opts);
  if (opts.downMs) await sleep(opts.downMs);
  return startBroker(opts);
}

/** Whether the broker for these options runs, and whether it answers. */
export async function brokerStatus(opts = {}) {
  const cfg = resolveConfig(opts);
  const pid = runningPid(cfg);
  let metadata = null;
  if (pid !== undefined) {
    try {
      metadata = await kafkaMetadata(cfg.host, cfg.port, 2000);
    } catch {
      metadata = null;
    }
  }
  return {
    running: pid !== undefined,
    ready: !!metadata && metadata.brokers.length > 0,
    pid,
    brokers: cfg.brokers,
    clusterId: metadata?.clusterId ?? null,
    dataDir: cfg.dataDir,
    logFile: cfg.logFile,
  };
}

/** Stops the broker and deletes its data dir (topics, offsets, cluster id). */
export async function resetBroker(opts = {}) {
  const cfg = resolveConfig(opts);
  await stopBroker(opts);
  rmSync(cfg.dataDir, { recursive: true, force: true });
  return { removed: cfg.dataDir };
}
