// Types for infra/kafka/broker.mjs (plain ESM, so it runs before any TypeScript build).

export declare const KAFKA_DIR: string;
export declare const CACHE_DIR: string;
export declare const POM_FILE: string;
export declare const LOG4J_FILE: string;
export declare const HOST: '127.0.0.1';
export declare const DEFAULT_PORT: 19092;
export declare const DEFAULT_CONTROLLER_PORT: 19093;
export declare const DEFAULT_JAVA_OPTS: readonly string[];

export interface BrokerOptions {
  /** client port; default $KAFKA_PORT or 19092 */
  port?: number;
  /** KRaft controller port; default $KAFKA_CONTROLLER_PORT, or 19093 for the default port, else port + 1 */
  controllerPort?: number;
  /** default $KAFKA_DATA_DIR or infra/kafka/.cache/data-<port>; holds server.properties, kafka.pid, kafka.log, kraft-logs/ */
  dataDir?: string;
  /** how long to wait for readiness; default $KAFKA_READY_TIMEOUT_MS or 120000 */
  readyTimeoutMs?: number;
  /** JVM flags replacing the defaults; default $KAFKA_JAVA_OPTS split on spaces, else DEFAULT_JAVA_OPTS */
  javaOpts?: string[];
  /** extra or overriding server.properties entries */
  properties?: Record<string, string | number | boolean>;
  /** no progress lines on stderr */
  quiet?: boolean;
}

export interface StopOptions extends BrokerOptions {
  /** 'SIGTERM' (default): clean shutdown; 'SIGKILL': a crash */
  signal?: 'SIGTERM' | 'SIGKILL';
  /** SIGKILL after this long if still running; default 30000 */
  timeoutMs?: number;
}

export interface RestartOptions extends StopOptions {
  /** stay down this long between stop and start */
  downMs?: number;
}

export interface StopResult {
  stopped: boolean;
  pid?: number;
  forced?: boolean;
}

export interface BrokerHandle {
  /** '127.0.0.1:<port>', for KAFKA_BROKERS / kafkajs `brokers: [..]` */
  brokers: string;
  host: string;
  port: number;
  controllerPort: number;
  dataDir: string;
  logFile: string;
  pid: number;
  /** true when the broker was already running (e.g. `npm run kafka:up`) and was only checked */
  alreadyRunning: boolean;
  stop(o?: StopOptions): Promise<StopResult>;
  restart(o?: RestartOptions): Promise<BrokerHandle>;
}

export interface ResolvedConfig {
  host: string;
  port: number;
  controllerPort: number;
  brokers: string;
  dataDir: string;
  logDir: string;
  configFile: string;
  pidFile: string;
  logFile: string;
  libDir: string;
  readyTimeoutMs: number;
  javaOpts: string[];
  properties: Record<string, string | number | boolean>;
  quiet: boolean;
}

export interface KafkaMetadata {
  brokers: { nodeId: number; host: string; port: number }[];
  clusterId: string | null;
  controllerId: number;
}

export interface BrokerStatus {
  running: boolean;
  ready: boolean;
  pid: number | undefined;
  brokers: string;
  clusterId: string | null;
  dataDir: string;
  logFile: string;
}

export declare function resolveConfig(opts?: BrokerOptions): ResolvedConfig;
export declare function ensureJars(opts?: {
  quiet?: boolean;
}): Promise<{ libDir: string; fetched: boolean; ms: number }>;
export declare function startBroker(opts?: BrokerOptions): Promise<BrokerHandle>;
export declare function stopBroker(opts?: StopOptions): Promise<StopResult>;
export declare function restartBroker(opts?: RestartOptions): Promise<BrokerHandle>;
export declare function brokerStatus(opts?: BrokerOptions): Promise<BrokerStatus>;
export declare function resetBroker(opts?: StopOptions): Promise<{ removed: string }>;
export declare function runningPid(opts?: BrokerOptions): number | undefined;
export declare function waitForReady(
  opts?: BrokerOptions & { timeoutMs?: number; pid?: number },
): Promise<KafkaMetadata>;
export declare function kafkaMetadata(host?: string, port?: number, timeoutMs?: number): Promise<KafkaMetadata>;
export declare function logTail(opts?: BrokerOptions, lines?: number): string;
