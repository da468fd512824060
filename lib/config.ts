/** Every setting the handlers read, in one place, with the embedded-stack defaults. */
const num = (name: string, fallback: number) => {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value)) throw new Error(`${name} must be a number, got "${raw}"`);
  return value;
};

export const config = () => ({
  /** Any DynamoDB endpoint; unset means the AWS default for the region. */
  dynamodbEndpoint: process.env.DYNAMODB_ENDPOINT || undefined,
  region: process.env.AWS_REGION || 'local',
  tablePrefix: process.env.FZ_TABLE_PREFIX ?? 'fangzhou-',
  /** `http` (the deployed shape) or `inprocess` (one process runs the gateway and all subgraphs). */
  subgraphTransport: (process.env.FZ_SUBGRAPH_TRANSPORT ?? 'http') as 'http' | 'inprocess',
  /** Base URL of the subgraph handlers: `<base>/panama`, `<base>/ark`, `<base>/butler`. */
  subgraphUrlBase: process.env.FZ_SUBGRAPH_URL_BASE ?? 'http://localhost:3000/subgraphs',
  /** Hash of the operator token; unset means no operator can be authenticated. */
  adminTokenHash: process.env.FZ_ADMIN_TOKEN_HASH || undefined,
  runnerPollSeconds: num('FZ_RUNNER_POLL_SECONDS', 2),
  /** How often runners beat (runner/heartbeat.ts); the API tells them with every answer. */
  heartbeatSeconds: num('FZ_HEARTBEAT_SECONDS', 1),
  /**
   * A host whose runner has not beaten for this long, by the API's clock, is DOWN and its instances move, unless
   * its notification socket still answers (butler/watchdog.ts).
   */
  hostDownSeconds: num('FZ_HOST_DOWN_SECONDS', 5),
  /**
   * Beyond this many heartbeats (polls) a second the fleet would send at the intervals above, the intervals and
   * host-down stretch with the fleet's size (subgraphs/ark/cadence.ts): 50 hosts beat each second, 1,000 every 20 s
   * (Nomad's default budget is 50 heartbeats a second too). One server-mode process on one core answered about 150
   * runner calls a second in bench/fleet-sim.ts, so the defaults keep a fleet's own traffic near half of that.
   */
  maxHeartbeatsPerSecond: num('FZ_MAX_HEARTBEATS_PER_SECOND', 50),
  maxPollsPerSecond: num('FZ_MAX_POLLS_PER_SECOND', 25),
  maxNoticesPerSecond: num('FZ_MAX_NOTICES_PER_SECOND', 50),
  /** How often the ticks (watchdog, reconcile, publish) run; the watchdog counts silence only while it was ticking. */
  tickSeconds: num('FZ_TICK_SECONDS', 1),
  /**
   * A claim (release name, idempotency key, alarm cause) whose holder left nothing behind is taken over after this
   * long: the holder crashed. Longer than any request takes, so a slow holder is never taken for a dead one.
   */
  claimLeaseSeconds: num('FZ_CLAIM_LEASE_SECONDS', 60),
  joinTokenTtlSeconds: num('FZ_JOIN_TOKEN_TTL_SECONDS', 3600),
  /** How long instanceLogs waits for the runner of the instance's host to answer. */
  logWaitSeconds: num('FZ_LOG_WAIT_SECONDS', 10),
  /** A followed log tail (instanceLogTail) ends after this long without a line or a new subscriber. */
  logFollowIdleSeconds: num('FZ_LOG_FOLLOW_IDLE_SECONDS', 300),
  dnsZone: process.env.FZ_DNS_ZONE ?? 'fz.internal',
  /** Limits checked before a document is validated or planned (lib/limits.ts). */
  limits: {
    maxBodyBytes: num('FZ_MAX_BODY_BYTES', 1024 * 1024),
    /** Anonymous callers may only register a host: a small document. Larger ones are refused before parsing. */
    maxAnonymousBodyBytes: num('FZ_MAX_ANONYMOUS_BODY_BYTES', 8 * 1024),
    maxTokens: num('FZ_MAX_TOKENS', 20_000),
    maxDepth: num('FZ_MAX_DEPTH', 12),
    maxAliases: num('FZ_MAX_ALIASES', 30),
    maxFields: num('FZ_MAX_FIELDS', 1_000),
    /** Characters of any one text argument not listed in TEXT_LIMITS (lib/limits.ts). */
    maxTextChars: num('FZ_MAX_TEXT_CHARS', 1024),
    /** Per principal and entry point, per minute. */
    mutationsPerMinute: num('FZ_RATE_MUTATIONS_PER_MINUTE', 1_200),
    runnerSyncsPerMinute: num('FZ_RATE_RUNNER_SYNCS_PER_MINUTE', 300),
  },
  /** Bearer JWTs of an external identity provider (lib/jwt.ts); unset issuer means JWTs are not accepted. */
  jwt: {
    jwksUrl: process.env.FZ_JWT_JWKS_URL || undefined,
    issuer: process.env.FZ_JWT_ISSUER || undefined,
    audience: process.env.FZ_JWT_AUDIENCE || undefined,
    /** The claim that carries the role; its value is VIEWER, OPERATOR or ADMIN, or a name mapped by roleMap. */
    roleClaim: process.env.FZ_JWT_ROLE_CLAIM || 'fangzhou_role',
    /** `group=ROLE,…`: maps the claim's values (a string or an array of strings) to roles; the highest wins. */
    roleMap: process.env.FZ_JWT_ROLE_MAP || '',
  },
  /** How long events are kept; the watchdog tick removes older ones (subgraphs/butler/events.ts). */
  eventRetentionDays: num('FZ_EVENT_RETENTION_DAYS', 7),
  /** How often the scheduled inspection runs (the watchdog tick starts it when due). */
  inspectionIntervalHours: num('FZ_INSPECTION_INTERVAL_HOURS', 24),
  /** The range every host's subnet and every instance's address come from. */
  clusterCidr: process.env.FZ_CLUSTER_CIDR || '10.240.0.0/16',
  /** Size of each host's subnet in the cluster range (24: up to 253 instances per host). */
  hostSubnetPrefix: num('FZ_HOST_SUBNET_PREFIX', 24),
  /**
   * The platform CA (lib/pca.ts): on when FZ_CA_DIR names its folder (ca.crt, ca.key 0600). Server mode then serves
   * HTTPS and WSS with a certificate of its own, hosts get a client certificate at registration and use it (mTLS).
   */
  ca: {
    dir: process.env.FZ_CA_DIR || null,
    /** Lifetime of the certificates it issues (hosts' and servers'); each is renewed at two thirds of it. */
    lifetimeSeconds: num('FZ_CERT_LIFETIME_SECONDS', 30 * 86_400),
    /** A certificate this close to its expiry raises CERTIFICATE_EXPIRING (renewal failed); resolved once renewed. */
    warningSeconds: num('FZ_CERT_WARNING_SECONDS', 7 * 86_400),
  },
  /** The platform registry (`host:port`) releases pin their images in and hosts pull from; unset: hosts use their own images. */
  registry: process.env.FZ_REGISTRY || null,
});

export type Config = ReturnType<typeof config>;
