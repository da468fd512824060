/** `npm run runner -- --name h1 --labels zone=a,disk=ssd`: the host runner's command line. */
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { log } from '../lib/log';
import type { KeyValue } from '../lib/runner-protocol';
import { AddressError, primaryAddress } from './address';
import { RunnerFatalError, startRunner, type RunnerConfig } from './agent';
import { DEFAULT_DOCKER_SOCKET } from './engine';

const USAGE = `usage: npm run runner -- --name NAME [options]

Registers this host with Fangzhou (once) and keeps its Docker containers in the desired state.

options:
  --name NAME            host name, unique in the fleet (required)
  --labels K=V,K=V       host labels for placement, e.g. zone=a,disk=ssd
  --address IP           address other hosts reach this one at, and route container traffic to (default: the
                         IPv4 address of the interface of the default route); unique in the fleet
  --cpu-millis N         CPU offered to the scheduler (default: engine CPUs x 1000)
  --memory-mb N          memory offered to the scheduler (default: engine memory)
  --docker-socket PATH   Docker engine socket or tcp://host:port (default: $DOCKER_HOST or ${DEFAULT_DOCKER_SOCKET})
  --ws-url URL           where desired-state notices come from (default: $FZ_WS_URL, or the API's port + 1; off: poll only)
  --state-dir DIR        where the registration is saved (default: .fangzhou/runners)
  --ca-cert FILE         the platform CA's certificate, to trust an https API by (default: $FZ_CA_CERT)
  --help                 show this text

environment:
  FZ_API_URL      GraphQL endpoint (default: http://localhost:3000/graphql)
  FZ_JOIN_TOKEN   join token, needed only for the first registration
  FZ_CA_CERT      the platform CA's certificate (ca.crt of the API's FZ_CA_DIR), for an https API
  DOCKER_HOST     Docker engine address, unless --docker-socket is given
`;

class UsageError extends Error {}

function parseLabels(text: string): KeyValue[] {
  return text
    .split(',')
    .filter((pair) => pair.trim())
    .map((pair) => {
      const at = pair.indexOf('=');
      if (at <= 0) throw new UsageError(`label "${pair}" is not KEY=VALUE`);
      return { key: pair.slice(0, at).trim(), value: pair.slice(at + 1).trim() };
    });
}

function positiveInt(option: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n <= 0) throw new UsageError(`--${option} must be a positive integer, got "${text}"`);
  return n;
}

function readCaCert(file: string | undefined): string | undefined {
  if (!file) return undefined;
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read the CA certificate ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

function parseConfig(argv: string[]): RunnerConfig | null {
  const { values } = parseArgs({
    args: argv,
    options: {
      name: { type: 'string' },
      labels: { type: 'string', default: '' },
      address: { type: 'string' },
      'cpu-millis': { type: 'string' },
      'memory-mb': { type: 'string' },
      'docker-socket': { type: 'string' },
      'ws-url': { type: 'string' },
      'state-dir': { type: 'string', default: '.fangzhou/runners' },
      'ca-cert': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) return null;
  if (!values.name) throw new UsageError('--name is required');
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(values.name)) {
    throw new UsageError(`--name "${values.name}" may hold only letters, digits, '.', '_' and '-'`);
  }
  return {
    name: values.name,
    labels: parseLabels(values.labels),
    address: values.address ?? primaryAddress(),
    cpuMillis: positiveInt('cpu-millis', values['cpu-millis']),
    memoryMb: positiveInt('memory-mb', values['memory-mb']),
    apiUrl: process.env.FZ_API_URL ?? 'http://localhost:3000/graphql',
    joinToken: process.env.FZ_JOIN_TOKEN || undefined,
    dockerTarget: values['docker-socket'] ?? process.env.DOCKER_HOST ?? DEFAULT_DOCKER_SOCKET,
    wsUrl: values['ws-url'] ?? (process.env.FZ_WS_URL || undefined),
    stateDir: values['state-dir'],
    caCert: readCaCert(values['ca-cert'] ?? (process.env.FZ_CA_CERT || undefined)),
  };
}

async function main(): Promise<number> {
  let config: RunnerConfig | null;
  try {
    config = parseConfig(process.argv.slice(2));
  } catch (err) {
    if (err instanceof AddressError) console.error(err.message);
    else console.error(`${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (!config) {
    console.log(USAGE);
    return 0;
  }

  const { name, labels, address, apiUrl, dockerTarget, stateDir } = config;
  log.info({ name, labels, address, apiUrl, dockerTarget, stateDir }, 'runner starting');
  const runner = startRunner(config);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      log.info({ signal }, 'stopping after the current step');
      void runner.stop();
    });
  }
  try {
    await runner.done;
    return 0;
  } catch (err) {
    if (err instanceof RunnerFatalError) log.error(err.message);
    else log.error({ err }, 'runner failed');
    return 1;
  }
}

void main().then((code) => process.exit(code));
