/**
 * What a host runner and Ark say to each other on every `runnerSync` call. The runner reports what it observes
 * on its Docker engine and receives what should run there; both sides use these shapes, the GraphQL types in
 * `schema/ark.graphql` mirror them field for field.
 */

export const LABELS = {
  managed: 'fangzhou.managed',
  host: 'fangzhou.host',
  instance: 'fangzhou.instance',
  release: 'fangzhou.release',
  spec: 'fangzhou.spec',
  /** On a container: its beforeStop hook (JSON), run before the runner stops or removes it. */
  beforeStop: 'fangzhou.before-stop',
  /** On a one-off container running an onReplace hook: the instance it prepares. */
  hookOf: 'fangzhou.hook-of',
} as const;

/** PULLING: no container yet, its image is being pulled from the platform registry. */
/** Docker's defaults for `docker stop`: what a product that declares no stop gets. */
export const DEFAULT_STOP = { signal: 'SIGTERM', timeoutSeconds: 10 } as const;

export type ContainerState = 'CREATED' | 'RUNNING' | 'RESTARTING' | 'EXITED' | 'DEAD' | 'MISSING' | 'PULLING';
export type ContainerHealth = 'STARTING' | 'HEALTHY' | 'UNHEALTHY' | 'NONE';

export interface KeyValue {
  key: string;
  value: string;
}

export interface PortSpec {
  name: string;
  containerPort: number;
  protocol: 'tcp' | 'udp';
}

export interface HealthcheckSpec {
  command: string[];
  intervalSeconds: number;
  timeoutSeconds: number;
  retries: number;
  startPeriodSeconds: number;
}

/** Commands (exec form) the runner runs at points of an instance's life; see Lifecycle in schema/panama.graphql. */
export interface LifecycleSpec {
  afterStart: string[] | null;
  beforeStop: string[] | null;
  onReplace: string[] | null;
}

export interface ConfigFileSpec {
  /** Absolute path inside the container. */
  path: string;
  content: string;
}

/** One container that should exist on the runner's host. */
export interface DesiredContainer {
  instanceId: string;
  releaseId: string;
  /** Docker container name, unique per host: `fz-<release name>-<ordinal>`. */
  name: string;
  /** As the product names it, e.g. `fangzhou/redis:7.0.15`. */
  image: string;
  /** The digest the release pinned for `image` (`sha256:…`); absent when it was not pinned (no registry). */
  imageDigest?: string | null;
  /** The platform registry (`host:port`) the runner pulls from; absent: run only what the engine already has. */
  registry?: string | null;
  /** Hash of everything below that shapes the container; a changed hash means recreate. */
  specHash: string;
  desiredState: 'RUNNING' | 'STOPPED';
  env: { name: string; value: string }[];
  ports: PortSpec[];
  cpuMillis: number;
  memoryMb: number;
  healthcheck: HealthcheckSpec | null;
  /** The instance's DNS name (served by every runner's DNS server). */
  domainName: string;
  /** Where the instance's named volume is mounted; absent: no volume. */
  dataPath?: string | null;
  lifecycle?: LifecycleSpec | null;
  /** The instance moved here from another host: its onReplace hook runs before its first start here. */
  replaced?: boolean;
  /** The instance's fixed address on its host's subnet; absent: the engine picks one. */
  ip?: string | null;
  configFiles: ConfigFileSpec[];
  /** How PID 1 is asked to stop, and how long it gets before SIGKILL; absent: DEFAULT_STOP. */
  stopSignal?: string;
  stopTimeoutSeconds?: number;
}

export interface ObservedPort {
  containerPort: number;
  protocol: 'tcp' | 'udp';
  hostPort: number | null;
}

/** One container carrying our labels, as the runner sees it on its engine. */
export interface ObservedContainer {
  containerId: string;
  instanceId: string;
  specHash: string;
  name: string;
  state: ContainerState;
  health: ContainerHealth;
  restartCount: number;
  exitCode: number | null;
  oomKilled: boolean;
  startedAt: string | null;
  ip: string | null;
  ports: ObservedPort[];
  /** Why the runner could not bring this instance to its desired state (missing image, engine error), if so. */
  error: string | null;
  /** The latest periodic sample, for running containers. */
  stats?: ContainerStats | null;
  /** While the image of the instance's desired spec is being pulled. */
  pull?: PullProgress | null;
  /**
   * Config files in the container that differ from the rendered ones the runner put there (`/path`, or
   * `/path (missing)`); null when none differ or they were not checked yet. Paths only, never content.
   */
  configDrift?: string[] | null;
}

/** How far a pull has come; bytes count only layers whose size the registry has announced yet. */
export interface PullProgress {
  image: string;
  layers: number;
  layersDone: number;
  bytesDone: number;
  bytesTotal: number;
}

export interface ContainerStats {
  cpuPercent: number;
  memoryBytes: number;
}

export interface EngineInfo {
  version: string;
  os: string;
  /** What the engine reports (NCPU × 1000, MemTotal): a host's capacity is capped at it. */
  cpuMillis?: number | null;
  memoryMb?: number | null;
  /** Pressure on the host, for the daily inspection: whole percent of the Docker root dir's file system in use. */
  diskUsedPercent?: number | null;
  /** MemAvailable in percent of MemTotal, rounded down to 5 (so a sync writes the host only when it moves). */
  memoryAvailablePercent?: number | null;
}

export interface SyncRequest {
  observed: ObservedContainer[];
  engine: EngineInfo | null;
  /** The runner's heartbeat session (runner/heartbeat.ts); absent: the sync is the heartbeat. */
  session?: string | null;
  /** The network serial of the routes and records the runner holds; absent or stale: send them. */
  networkSerial?: number | null;
}

/** A route to another host's subnet via that host's address (host-gw). */
export interface Route {
  subnet: string;
  via: string;
}

/** One record of the internal zone: A (address) or SRV (target and port). */
export interface DnsRecord {
  name: string;
  type: 'A' | 'SRV';
  address: string | null;
  target: string | null;
  port: number | null;
}

/** The host's place in the cluster network, and what its runner programs and serves. */
export interface HostNetwork {
  /** This host's subnet; its `fangzhou` bridge is created on it. */
  subnet: string;
  /** The bridge's address: containers' gateway and DNS server. */
  gateway: string;
  clusterCidr: string;
  zone: string;
  serial: number;
  /** Null when the runner already holds this serial. */
  routes: Route[] | null;
  records: DnsRecord[] | null;
}

export interface SyncResponse {
  hostId: string;
  desired: DesiredContainer[];
  /** How long the runner waits before its next sync when nothing happens. */
  pollSeconds: number;
  network: HostNetwork;
  /** Container logs the API waits for; answered with runnerLogs (runner/logs.ts). */
  logRequests?: LogRequest[];
  /** Containers someone follows live (instanceLogTail); new lines go back with runnerLogTail (runner/logs.ts). */
  logFollows?: LogFollow[];
}

/** One of the host's containers whose new output is wanted, after `since`. */
export interface LogFollow {
  instanceId: string;
  /** RFC 3339 (nanoseconds): only lines after this time. */
  since: string;
}

/** The tail of one of the host's containers, asked for by instanceLogs. */
export interface LogRequest {
  id: string;
  instanceId: string;
  tail: number;
  /** RFC 3339: only lines after this time. */
  since: string | null;
}

export interface LogLine {
  at: string;
  stream: 'STDOUT' | 'STDERR';
  text: string;
}
