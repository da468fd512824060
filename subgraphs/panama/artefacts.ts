/**
 * Generated artefacts of a release: a shell script or a compose file that reproduces it on a plain Docker host, and
 * the config summary table (CSV or Markdown) of every release, instance, host, address, port and resource.
 *
 * The containers these artefacts create match what a host runner creates (runner/plan.ts createOptions): same name,
 * image, env, memory and CPU limits, restart policy, ephemeral published ports, healthcheck, network `fangzhou` with
 * the instance's domain name as alias, and the rendered config files. They differ on purpose in two ways:
 *  - labels: `fangzhou.managed=script` and no `fangzhou.host`, so no host runner adopts or removes them (runners
 *    select their containers by `fangzhou.host`); `fangzhou.instance`, `fangzhou.release`, `fangzhou.spec` as usual;
 *  - config files are bind-mounted read-only (script) or compose configs, instead of being copied into the container.
 * The shell script's healthcheck runs through `/bin/sh -c` in the container (`docker run` has no exec-form
 * `--health-cmd`); the compose file keeps the exec form.
 */
import { stringify } from 'yaml';
import { AppError, badInput } from '../../lib/errors';
import { replaceSecrets, secretToken, secretsIn } from '../../lib/secrets';
import { LABELS, type HealthcheckSpec } from '../../lib/runner-protocol';
import { NETWORK } from '../../runner/plan';
import { containerName, specHash, type ContainerSpec } from '../ark';

export type ScriptFormat = 'SHELL' | 'COMPOSE';
export type SummaryFormat = 'CSV' | 'MARKDOWN';

/** The value of `fangzhou.managed` on containers (and the network) that a generated artefact creates. */
export const SCRIPT_MANAGED = 'script';

/** The release fields artefacts use (a Release item has them all). */
export interface ArtefactRelease {
  id: string;
  name: string;
  product: string;
  version: string;
  revision?: number;
}

/** An instance as artefacts use it (an Instance item fits). */
export interface ArtefactInstance {
  id: string;
  ordinal: number;
  domainName: string;
  /** The container spec, with the rendered config files in `configFiles`. */
  spec: ContainerSpec;
  /** Defaults to the hash of `spec`. */
  specHash?: string;
  /** Docker container name; defaults to `fz-<release name>-<ordinal>` like the runner's. */
  name?: string;
}

/** A script (format SHELL) or compose file (COMPOSE) that (re)creates the release's containers on plain Docker. */
export function deploymentScript(format: ScriptFormat, release: ArtefactRelease, instances: ArtefactInstance[]): string {
  if (format === 'SHELL') return shellScript(release, instances);
  if (format === 'COMPOSE') return composeFile(release, instances);
  throw badInput(`format must be SHELL or COMPOSE, got ${String(format)}`, 'format');
}

interface Prepared {
  id: string;
  name: string;
  domainName: string;
  spec: ContainerSpec;
  labels: Record<string, string>;
}

const CONFIG_PATH = /^(\/[A-Za-z0-9._@+=-]+)+$/;

function prepare(release: ArtefactRelease, instances: ArtefactInstance[]): Prepared[] {
  const names = new Set<string>();
  return [...instances].sort((a, b) => a.ordinal - b.ordinal).map((i) => {
    const name = i.name ?? containerName({ releaseName: release.name, ordinal: i.ordinal });
    if (names.has(name)) throw new AppError('INTERNAL', `two instances of release ${release.id} share the container name ${name}`);
    names.add(name);
    for (const f of i.spec.configFiles) {
      if (!CONFIG_PATH.test(f.path) || f.path.split('/').some((s) => s === '.' || s === '..')) {
        throw badInput(`config file ${f.path} of instance ${i.id} cannot be mounted by a generated script: use plain absolute paths (letters, digits, . _ @ + = -); redefine the product's configTemplates`, 'releaseId');
      }
    }
    return {
      id: i.id,
      name,
      domainName: i.domainName,
      spec: i.spec,
      labels: {
        [LABELS.managed]: SCRIPT_MANAGED,
        [LABELS.instance]: i.id,
        [LABELS.release]: release.id,
        [LABELS.spec]: i.specHash ?? specHash(i.spec),
      },
    };
  });
}

/** One line of comment text: whatever a value holds, it cannot end the comment. */
const oneLine = (s: string) => s.replace(/[\r\n]+/g, ' ');

function describe(release: ArtefactRelease, count: number): string {
  const revision = release.revision === undefined ? '' : `, revision ${release.revision}`;
  return oneLine(`release "${release.name}" (${release.id}): product ${release.product} ${release.version}${revision}, ${count} instance(s)`);
}

// ---------------------------------------------------------------------------------------------------------------
// Shell

/** A single-quoted shell word: the value exactly, whatever it holds (quotes, $, `, \, newlines). */
export const shellQuote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
/** Quoted only when it has to be, for readable commands. */
const shellWord = (s: string) => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(s) ? s : shellQuote(s));

/** The healthcheck as a shell command line for `--health-cmd` (which always runs it with `/bin/sh -c`). */
function healthShell(command: string[]): string {
  if (command[0] === 'CMD-SHELL') return command.slice(1).join(' ');
  const args = command[0] === 'CMD' ? command.slice(1) : command;
  return args.map(shellWord).join(' ');
}

const cpus = (millis: number) => String(millis / 1000);

function healthFlags(h: HealthcheckSpec | null): string[] {
  if (!h) return [];
  if (h.command[0] === 'NONE') return ['--no-healthcheck'];
  return [
    `--health-cmd ${shellQuote(healthShell(h.command))}`,
    `--health-interval ${h.intervalSeconds}s`,
    `--health-timeout ${h.timeoutSeconds}s`,
    `--health-retries ${h.retries}`,
    `--health-start-period ${h.startPeriodSeconds}s`,
  ];
}

/** A quoted here-document delimiter that no line of the content equals. */
function delimiterFor(content: string): string {
  const lines = new Set(content.split('\n'));
  let delimiter = 'FANGZHOU_EOF';
  for (let n = 1; lines.has(delimiter); n++) delimiter = `FANGZHOU_EOF_${n}`;
  return delimiter;
}

/** A secret's token (lib/secrets.ts) is these two around its name. */
const [TOKEN_OPEN, TOKEN_CLOSE] = secretToken('\n').split('\n');

/**
 * The awk program of the script's `fz_fill_secrets`: in one file, puts the value of one secret in place of each of its
 * tokens, as lib/secrets.ts fillSecrets does for a runner. The caller sets FZ_S to the secret's name (its value is in
 * the environment variable of that name) and `e` to 1 when the file ends with a newline.
 * - index() and substr(), not gsub(): the value goes in as it is (gsub would read & and \ in it, and the token as a
 *   regular expression), and the search goes on after it, so a value that holds the token is not filled again.
 * - awk reads lines without their newline: it writes one back between lines, and after the last only when `e` says
 *   the file had one, so the file keeps its ending.
 * It stands single-quoted in the script: no ' in it.
 */
const FILL_SECRET_AWK = [
  `BEGIN { token = "${TOKEN_OPEN}" ENVIRON["FZ_S"] "${TOKEN_CLOSE}"; value = ENVIRON[ENVIRON["FZ_S"]] }`,
  '{',
  '  filled = ""; rest = $0',
  '  while ((at = index(rest, token)) > 0) {',
  '    filled = filled substr(rest, 1, at - 1) value',
  '    rest = substr(rest, at + length(token))',
  '  }',
  '  printf "%s%s", (NR > 1 ? "\\n" : ""), filled rest',
  '}',
  'END { if (NR && e) printf "\\n" }',
];

/**
 * A POSIX sh script (`set -eu`) that creates the network if missing and removes and recreates each instance's
 * container. Config files go to `${FZ_CONFIG_DIR:-<script dir>/fangzhou-config}/<container>/<path>` via quoted
 * here-documents and are bind-mounted read-only. Running it again gives the same containers. It refuses to replace
 * a container of the same name that a script did not create (a runner's, or anyone else's).
 */
export function shellScript(release: ArtefactRelease, instances: ArtefactInstance[]): string {
  const prepared = prepare(release, instances);
  const withFiles = prepared.some((p) => p.spec.configFiles.length > 0);
  const out: string[] = [];
  const emit = (...lines: string[]) => out.push(...lines);

  emit(
    '#!/bin/sh',
    `# Fangzhou deployment script for ${describe(release, prepared.length)}.`,
    '#',
    '# Reproduces the release on a plain Docker host, without Fangzhou: creates the network "fangzhou" if it is',
    '# missing, then removes and recreates each instance\'s container with the name, image, env, limits, ports,',
    '# healthcheck and DNS alias a Fangzhou host runner would give it. Running it again recreates the containers.',
    ...NOT_REPRODUCED.map((l) => `# ${l}`),
    '# Config files are written under $FZ_CONFIG_DIR (default: fangzhou-config next to this script), one directory',
    '# per container, and bind-mounted read-only. The healthcheck runs with /bin/sh -c inside the container.',
    '#',
    `# The containers are labelled ${LABELS.managed}=${SCRIPT_MANAGED} and carry no ${LABELS.host} label: no Fangzhou host`,
    '# runner adopts or removes them. The script stops rather than replace a container it did not create.',
    '#',
    '# Usage:  sh this-script.sh          (DOCKER_HOST selects another engine, FZ_CONFIG_DIR another directory)',
    `# Remove: docker rm -f $(docker ps -aq --filter label=${LABELS.managed}=${SCRIPT_MANAGED} --filter label=${LABELS.release}=${oneLine(release.id)})`,
    'set -eu',
    'umask 022',
    '',
    'command -v docker >/dev/null 2>&1 || { echo "fangzhou: the docker command is needed" >&2; exit 1; }',
    '',
    `# Stops unless the name is free or held by a container that a Fangzhou script created (${LABELS.managed}=${SCRIPT_MANAGED}).`,
    'fz_check_name() {',
    `  fz_managed=$(docker container inspect --format '{{index .Config.Labels "${LABELS.managed}"}}' "$1" 2>/dev/null) || return 0`,
    `  if [ "$fz_managed" != ${SCRIPT_MANAGED} ]; then`,
    `    if [ -n "$fz_managed" ]; then fz_why=" (it has ${LABELS.managed}=$fz_managed: a Fangzhou host runner manages it)"; else fz_why=''; fi`,
    '    echo "fangzhou: a container named $1 exists that no Fangzhou script created$fz_why; remove or rename it first" >&2',
    '    exit 1',
    '  fi',
    '}',
    '',
    'fz_remove() {',
    '  if docker container inspect "$1" >/dev/null 2>&1; then docker rm --force "$1" >/dev/null; fi',
    '}',
  );
  if (withFiles) {
    emit(
      '',
      '# Writes standard input to $FZ_CONFIG_DIR/<path>; with -n, drops the newline the here-document adds at the end.',
      'fz_file() {',
      '  fz_f=$FZ_CONFIG_DIR/$1',
      '  mkdir -p -- "$(dirname -- "$fz_f")"',
      '  cat > "$fz_f"',
      '  if [ "${2:-}" = -n ]; then',
      '    fz_content=$(cat -- "$fz_f")',
      '    printf \'%s\' "$fz_content" > "$fz_f"',
      '  fi',
      '}',
      '',
      '# Puts the values of the named secrets (from your environment) in place of their tokens in $FZ_CONFIG_DIR/<path>,',
      '# keeping whether the file ends with a newline.',
      'fz_fill_secrets() {',
      '  fz_f=$FZ_CONFIG_DIR/$1',
      '  shift',
      '  if [ -z "$(tail -c 1 -- "$fz_f")" ]; then fz_e=1; else fz_e=0; fi',
      '  for fz_s in "$@"; do',
      '    # The x after the output keeps its newlines at the end, which $(...) would drop.',
      `    fz_filled=$(FZ_S="$fz_s" awk -v e="$fz_e" '`,
      ...FILL_SECRET_AWK.map((line) => `      ${line}`),
      `    ' "$fz_f"; printf x)`,
      '    printf \'%s\' "${fz_filled%x}" > "$fz_f"',
      '  done',
      '}',
      '',
      'fz_dir=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)',
      'FZ_CONFIG_DIR=${FZ_CONFIG_DIR:-$fz_dir/fangzhou-config}',
      'mkdir -p -- "$FZ_CONFIG_DIR"',
      'FZ_CONFIG_DIR=$(CDPATH= cd -- "$FZ_CONFIG_DIR" && pwd)',
      "fz_nl='",
      "'",
      'case $FZ_CONFIG_DIR in',
      '  *[,\\"]* | *"$fz_nl"*) echo "fangzhou: FZ_CONFIG_DIR must not contain a comma, a double quote or a newline: $FZ_CONFIG_DIR" >&2; exit 1 ;;',
      'esac',
    );
  }
  // Secret values are never written into an artefact: the script takes them from its caller's environment.
  const secretNames = [...new Set(prepared.flatMap((p) => (p.spec.secretEnv ?? []).map((v) => v.name)))];
  emit(
    '',
    ...(secretNames.length ? ['# Secrets come from your environment (fangzhou never prints them).', ...secretNames.map((n) => `: "\${${n}:?set ${n}: a secret of this release}"`)] : []),
    '# Check every name before changing anything.',
    ...prepared.map((p) => `fz_check_name ${shellQuote(p.name)}`),
    '',
    `docker network inspect ${NETWORK} >/dev/null 2>&1 \\`,
    `  || docker network create --driver bridge --label ${LABELS.managed}=${SCRIPT_MANAGED} ${NETWORK} >/dev/null`,
    '',
    '# Containers an earlier run created for instances the release no longer has (it was scaled down).',
    `for fz_c in $(docker ps -a --filter label=${LABELS.managed}=${SCRIPT_MANAGED} --filter ${shellQuote(`label=${LABELS.release}=${release.id}`)} --format '{{.Names}}'); do`,
    `  case ${shellQuote(` ${prepared.map((p) => p.name).join(' ')} `)} in`,
    '    *" $fz_c "*) ;;',
    '    *) docker rm --force "$fz_c" >/dev/null; echo "fangzhou: removed $fz_c, an instance the release no longer has" ;;',
    '  esac',
    'done',
  );

  for (const p of prepared) {
    const s = p.spec;
    emit('', `# Instance ${oneLine(p.id)}: ${p.name}, ${oneLine(p.domainName)}`, `fz_remove ${shellQuote(p.name)}`);
    const mounts: string[] = [];
    for (const f of s.configFiles) {
      const relative = `${p.name}${f.path}`;
      const trim = f.content.endsWith('\n') ? '' : ' -n';
      const delimiter = delimiterFor(f.content);
      const body = f.content.endsWith('\n') ? f.content : `${f.content}\n`;
      out.push(`fz_file ${shellQuote(relative)}${trim} <<'${delimiter}'\n${body}${delimiter}`);
      const secrets = secretsIn(f.content);
      if (secrets.length) out.push(`fz_fill_secrets ${shellQuote(relative)} ${secrets.join(' ')}`);
      mounts.push(`--mount "type=bind,source=$FZ_CONFIG_DIR/"${shellQuote(`${relative},target=${f.path},readonly`)}`);
    }
    const flags = [
      `--name ${shellQuote(p.name)}`,
      ...Object.entries(p.labels).map(([k, v]) => `--label ${shellQuote(`${k}=${v}`)}`),
      ...s.env.map((e) => `--env ${shellQuote(`${e.name}=${e.value}`)}`),
      ...(s.secretEnv ?? []).map((v) => `--env ${v.name}`),
      `--memory ${s.memoryMb}m`,
      `--cpus ${cpus(s.cpuMillis)}`,
      '--restart unless-stopped',
      ...s.ports.map((port) => `--publish ${port.containerPort}/${port.protocol}`),
      ...healthFlags(s.healthcheck),
      `--network ${NETWORK}`,
      `--network-alias ${shellQuote(p.domainName)}`,
      ...mounts,
    ];
    emit(`docker run --detach \\`, ...flags.map((f) => `  ${f} \\`), `  ${shellQuote(s.image)} >/dev/null`);
    emit(`echo ${shellQuote(`fangzhou: started ${p.name}`)}`);
  }
  emit('');
  return out.join('\n');
}

/** What a script for one plain Docker host leaves out of the fleet's network, said in both formats' headers. */
const NOT_REPRODUCED = [
  'Not reproduced: the fleet network. Every instance runs on this one host, on an address Docker picks (not its fixed',
  'address on the cluster network), with no routes to other hosts and no fz.internal DNS server: instances find each',
  "other by the same names through Docker's embedded DNS (network aliases), on this host only; release names",
  '(<release>.fz.internal) and SRV names do not resolve. Config files rendered with addresses (a template\'s ip)',
  'name the fleet addresses, which these containers do not have: use domain names in templates for such copies.',
  'Data volumes and lifecycle hooks are not reproduced either.',
];

// ---------------------------------------------------------------------------------------------------------------
// Compose

/** Compose replaces ${VAR} and $VAR in every string; "$$" is a literal "$". */
const literal = (s: string) => s.replace(/\$/g, () => '$$');

function composeHealthcheck(h: HealthcheckSpec | null) {
  if (!h) return undefined;
  if (h.command[0] === 'NONE') return { disable: true };
  const test = h.command[0] === 'CMD' || h.command[0] === 'CMD-SHELL' ? h.command : ['CMD', ...h.command];
  return {
    test: test.map(literal),
    interval: `${h.intervalSeconds}s`,
    timeout: `${h.timeoutSeconds}s`,
    retries: h.retries,
    start_period: `${h.startPeriodSeconds}s`,
  };
}

/**
 * A compose file (Compose Specification, `docker compose up -d`): project `fz-<release>`, one service per instance
 * with `container_name` = the runner's container name. Config files are top-level `configs` with inline `content`
 * (Docker Compose 2.23.1 or newer), mounted at their paths read-only. Every "$" is written "$$" so that compose's
 * variable interpolation leaves values alone. The network `fangzhou` is created if missing and used if present.
 */
export function composeFile(release: ArtefactRelease, instances: ArtefactInstance[]): string {
  const prepared = prepare(release, instances);
  const configs: Record<string, { content: string }> = {};
  const services: Record<string, unknown> = {};
  for (const p of prepared) {
    const s = p.spec;
    const mounted = s.configFiles.map((f) => {
      const base = `${p.name}${f.path.replace(/[^A-Za-z0-9._-]/g, '_')}`;
      let key = base;
      for (let n = 2; configs[key]; n++) key = `${base}_${n}`;
      // A secret's token becomes an interpolation from the caller's environment: its value is never in the file.
      configs[key] = { content: replaceSecrets(literal(f.content), (n) => `\${${n}:?set ${n}: a secret of this release}`) };
      return { source: key, target: f.path };
    });
    services[p.name] = {
      image: literal(s.image),
      container_name: p.name,
      ...(s.env.length || s.secretEnv?.length ? {
        environment: Object.fromEntries([
          ...s.env.map((e) => [e.name, literal(e.value)]),
          // Interpolated by compose from the caller's environment: the secret's value is never in the file.
          ...(s.secretEnv ?? []).map((v) => [v.name, `\${${v.name}:?set ${v.name}: a secret of this release}`]),
        ]),
      } : {}),
      labels: Object.fromEntries(Object.entries(p.labels).map(([k, v]) => [k, literal(v)])),
      mem_limit: `${s.memoryMb}m`,
      cpus: s.cpuMillis / 1000,
      restart: 'unless-stopped',
      ...(s.ports.length ? { ports: s.ports.map((port) => ({ target: port.containerPort, protocol: port.protocol })) } : {}),
      ...(s.healthcheck ? { healthcheck: composeHealthcheck(s.healthcheck) } : {}),
      networks: { [NETWORK]: { aliases: [literal(p.domainName)] } },
      ...(mounted.length ? { configs: mounted } : {}),
    };
  }
  const doc = {
    name: `fz-${release.name}`,
    services,
    networks: { [NETWORK]: { name: NETWORK } },
    ...(Object.keys(configs).length ? { configs } : {}),
  };
  const header = [
    `Fangzhou compose file for ${describe(release, prepared.length)}.`,
    'Reproduces the release on a plain Docker host: docker compose -f this-file.yaml up -d',
    'Needs Docker Compose 2.23.1 or newer (configs with inline content). Published ports are ephemeral:',
    'docker compose port <service> <port> tells which. Every "$$" below is a literal "$".',
    `Containers carry ${LABELS.managed}=${SCRIPT_MANAGED} and no ${LABELS.host} label, so no Fangzhou host runner touches them.`,
    `Compose creates the network "${NETWORK}" if it is missing (and warns that it did not create it otherwise).`,
    ...NOT_REPRODUCED,
  ];
  const yamlText = stringify(doc, { aliasDuplicateObjects: false, lineWidth: 0 });
  return `${header.map((l) => `# ${l}`).join('\n')}\n${yamlText}`;
}

// ---------------------------------------------------------------------------------------------------------------
// Config summary

export interface SummaryRow {
  release: string;
  product: string;
  version: string;
  /** Empty for a release without instances. */
  instance: string;
  ordinal: number | null;
  /** The host's name. */
  host: string;
  /** The host's address: where the published ports answer. */
  address: string;
  /** The instance's fixed address on the cluster network (as observed for an instance from before fixed addresses). */
  ip: string;
  domainName: string;
  /** Space-separated, e.g. "8080/tcp->32768 9090/udp->32770"; "8080/tcp" while no host port is known. */
  ports: string;
  cpuMillis: number;
  memoryMb: number;
  /** The container's state (RUNNING, EXITED, ...), "NOT REPORTED" before its runner reported it, "NO INSTANCES". */
  state: string;
  /** HEALTHY, UNHEALTHY, STARTING, NONE, or empty when not reported. */
  health: string;
}

export const SUMMARY_COLUMNS: (keyof SummaryRow)[] = [
  'release', 'product', 'version', 'instance', 'ordinal', 'host', 'address', 'ip', 'domainName', 'ports',
  'cpuMillis', 'memoryMb', 'state', 'health',
];
const NUMERIC = new Set<keyof SummaryRow>(['ordinal', 'cpuMillis', 'memoryMb']);

export interface SummaryInput {
  releases: { id: string; name: string; product: string; version: string; resources: { cpuMillis: number; memoryMb: number } }[];
  instances: { id: string; releaseId: string; ordinal: number; hostId: string; domainName: string; ip?: string | null; spec: Pick<ContainerSpec, 'ports' | 'cpuMillis' | 'memoryMb'> }[];
  hosts: { id: string; name: string; address: string }[];
  containers: {
    instanceId: string;
    state: string;
    health: string;
    ip: string | null;
    ports: { containerPort: number; protocol: string; hostPort: number | null }[];
  }[];
}

/** One row per instance (one per release without instances), by release name and ordinal. */
export function summaryRows({ releases, instances, hosts, containers }: SummaryInput): SummaryRow[] {
  const hostById = new Map(hosts.map((h) => [h.id, h]));
  const containerOf = new Map(containers.map((c) => [c.instanceId, c]));
  const rows: SummaryRow[] = [];
  for (const r of [...releases].sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id))) {
    const own = instances.filter((i) => i.releaseId === r.id).sort((a, b) => a.ordinal - b.ordinal);
    const base = { release: r.name, product: r.product, version: r.version };
    if (own.length === 0) {
      rows.push({
        ...base, instance: '', ordinal: null, host: '', address: '', ip: '', domainName: '', ports: '',
        cpuMillis: r.resources.cpuMillis, memoryMb: r.resources.memoryMb, state: 'NO INSTANCES', health: '',
      });
      continue;
    }
    for (const i of own) {
      const host = hostById.get(i.hostId);
      const c = containerOf.get(i.id);
      const ports = c
        ? c.ports.map((p) => `${p.containerPort}/${p.protocol}${p.hostPort === null ? '' : `->${p.hostPort}`}`)
        : i.spec.ports.map((p) => `${p.containerPort}/${p.protocol}`);
      rows.push({
        ...base,
        instance: i.id,
        ordinal: i.ordinal,
        host: host?.name ?? i.hostId,
        address: host?.address ?? '',
        ip: i.ip ?? c?.ip ?? '',
        domainName: i.domainName,
        ports: ports.join(' '),
        cpuMillis: i.spec.cpuMillis,
        memoryMb: i.spec.memoryMb,
        state: c ? c.state : 'NOT REPORTED',
        health: c ? c.health : '',
      });
    }
  }
  return rows;
}

const cell = (v: SummaryRow[keyof SummaryRow]) => (v === null ? '' : String(v));

/** RFC 4180: CRLF line ends; a field with a comma, double quote, CR or LF is quoted, its quotes doubled. */
const csvField = (s: string) => (/[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);

/** GFM table cell: backslash and pipe escaped, line breaks as <br>. */
const markdownCell = (s: string) => s.replace(/\\/g, '\\\\').replace(/\|/g, '\\|').replace(/\r\n|\r|\n/g, '<br>');

/** The summary table as CSV (RFC 4180, with a header line) or a Markdown (GFM) pipe table. */
export function configSummary(format: SummaryFormat, rows: SummaryRow[]): string {
  if (format === 'CSV') {
    const lines = [SUMMARY_COLUMNS, ...rows.map((r) => SUMMARY_COLUMNS.map((k) => cell(r[k])))];
    return lines.map((fields) => fields.map(csvField).join(',')).join('\r\n') + '\r\n';
  }
  if (format === 'MARKDOWN') {
    const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
    return [
      line(SUMMARY_COLUMNS),
      line(SUMMARY_COLUMNS.map((k) => (NUMERIC.has(k) ? '---:' : '---'))),
      ...rows.map((r) => line(SUMMARY_COLUMNS.map((k) => markdownCell(cell(r[k]))))),
    ].join('\n') + '\n';
  }
  throw badInput(`format must be CSV or MARKDOWN, got ${String(format)}`, 'format');
}
