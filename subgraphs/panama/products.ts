import semver from 'semver';
import { badInput, conflict, notFound } from '../../lib/errors';
import { ConditionFailed, type Store, type Versioned } from '../../lib/store';
import { DEFAULT_STOP, type HealthcheckSpec, type LifecycleSpec, type PortSpec } from '../../lib/runner-protocol';
import * as check from '../../lib/validate';
import { sealAll, type SealedVar } from '../../lib/secrets';
import { checkTemplates } from './templates';

export interface ProductVersion {
  version: string;
  image: string;
  notes?: string | null;
}

export interface Product extends Versioned {
  name: string;
  description: string;
  versions: ProductVersion[];
  dependencies: { product: string; versionRange: string }[];
  defaults: {
    replicas: number;
    resources: check.Resources;
    ports: PortSpec[];
    env: { name: string; value: string }[];
    /** Sealed (lib/secrets.ts); never returned, only their names. */
    secretEnv?: SealedVar[];
    healthcheck: HealthcheckSpec | null;
    /** Absent on products defined before stops were declared: the defaults apply. */
    stopSignal?: string;
    stopTimeoutSeconds?: number;
    dataPath?: string | null;
    lifecycle?: LifecycleSpec | null;
  };
  configTemplates: { path: string; template: string }[];
  requiresExclusiveHosts: boolean;
  updatedAt: string;
}

export type ProductInput = {
  name: string;
  description?: string | null;
  versions: ProductVersion[];
  dependencies?: { product: string; versionRange: string }[] | null;
  defaults?: {
    replicas?: number | null;
    resources?: check.Resources | null;
    ports?: { name: string; containerPort: number; protocol?: string | null }[] | null;
    env?: { name: string; value: string }[] | null;
    /** Write-only; left out, a redefinition keeps the product's current secrets. */
    secretEnv?: { name: string; value: string }[] | null;
    healthcheck?: Partial<HealthcheckSpec> & { command: string[] } | null;
    stopSignal?: string | null;
    stopTimeoutSeconds?: number | null;
    dataPath?: string | null;
    lifecycle?: Partial<LifecycleSpec> | null;
  } | null;
  configTemplates?: { path: string; template: string }[] | null;
  requiresExclusiveHosts?: boolean | null;
};

const STOP_SIGNALS = ['SIGTERM', 'SIGINT', 'SIGQUIT', 'SIGHUP', 'SIGUSR1', 'SIGUSR2', 'SIGWINCH', 'SIGPWR', 'SIGKILL'];

const IMAGE = /^[a-z0-9]+([._\-/:@][a-zA-Z0-9]+)*$/;

/** Turns client input into a product definition, or says which field is wrong. */
const HEALTHCHECK_FORMS = 'a shell command ("test -f /www/health", run with /bin/sh -c) or a program and its arguments (["CMD", "test", "-f", "/www/health"])';

/**
 * Compose's rule: one string is a shell command (CMD-SHELL). GraphQL hands a lone string over as a one-item list,
 * which Docker would otherwise exec as a program named after the whole line.
 */
function healthcheckCommand(command: string[]): string[] {
  const field = 'defaults.healthcheck.command';
  if (!command[0]?.trim()) throw badInput(`${field} must not be empty: give ${HEALTHCHECK_FORMS}`, field);
  if (command.length === 1 && (command[0] === 'CMD' || command[0] === 'CMD-SHELL')) throw badInput(`${field} ${command[0]} names no command: give ${HEALTHCHECK_FORMS}`, field);
  if (command.length === 1 && command[0] !== 'NONE') return ['CMD-SHELL', command[0]];
  return command;
}

export function productFromInput(input: ProductInput, now = new Date()): Omit<Product, 'seq'> {
  const name = check.dnsLabel(input.name, 'name', 30);
  if (input.versions.length === 0) throw badInput('versions must list at least one version with its image', 'versions');
  const seen = new Set<string>();
  const versions = input.versions.map((v, i) => {
    if (!semver.valid(v.version)) throw badInput(`versions[${i}].version "${v.version}" is not a semantic version (e.g. 7.0.15)`, `versions[${i}].version`);
    if (seen.has(v.version)) throw badInput(`versions lists ${v.version} twice`, `versions[${i}].version`);
    seen.add(v.version);
    if (!IMAGE.test(v.image)) throw badInput(`versions[${i}].image "${v.image}" is not a Docker image reference (e.g. fangzhou/redis:7)`, `versions[${i}].image`);
    return { version: v.version, image: v.image, notes: v.notes ?? null };
  });
  const dependencies = (input.dependencies ?? []).map((d, i) => {
    check.dnsLabel(d.product, `dependencies[${i}].product`, 30);
    if (d.product === name) throw badInput(`${name} cannot depend on itself`, `dependencies[${i}].product`);
    if (!semver.validRange(d.versionRange)) throw badInput(`dependencies[${i}].versionRange "${d.versionRange}" is not a semver range (e.g. ^3.8)`, `dependencies[${i}].versionRange`);
    return { product: d.product, versionRange: d.versionRange };
  });
  const d = input.defaults ?? {};
  const ports = (d.ports ?? []).map((p, i) => {
    const protocol = (p.protocol ?? 'tcp').toLowerCase();
    if (protocol !== 'tcp' && protocol !== 'udp') throw badInput(`defaults.ports[${i}].protocol must be tcp or udp`, `defaults.ports[${i}].protocol`);
    check.dnsLabel(p.name, `defaults.ports[${i}].name`, 15);
    return { name: p.name, containerPort: check.intInRange(p.containerPort, `defaults.ports[${i}].containerPort`, 1, 65535), protocol: protocol as 'tcp' | 'udp' };
  });
  const hc = d.healthcheck;
  const healthcheck = hc ? {
    command: healthcheckCommand(hc.command),
    intervalSeconds: check.intInRange(hc.intervalSeconds ?? 10, 'defaults.healthcheck.intervalSeconds', 1, 3600),
    timeoutSeconds: check.intInRange(hc.timeoutSeconds ?? 5, 'defaults.healthcheck.timeoutSeconds', 1, 3600),
    retries: check.intInRange(hc.retries ?? 3, 'defaults.healthcheck.retries', 1, 100),
    startPeriodSeconds: check.intInRange(hc.startPeriodSeconds ?? 0, 'defaults.healthcheck.startPeriodSeconds', 0, 3600),
  } : null;
  const stopSignal = (d.stopSignal ?? DEFAULT_STOP.signal).toUpperCase();
  if (!STOP_SIGNALS.includes(stopSignal)) {
    throw badInput(`defaults.stopSignal "${d.stopSignal}" is not a stop signal; use one of ${STOP_SIGNALS.join(', ')}`, 'defaults.stopSignal');
  }
  const stopTimeoutSeconds = check.intInRange(d.stopTimeoutSeconds ?? DEFAULT_STOP.timeoutSeconds, 'defaults.stopTimeoutSeconds', 1, 600);
  const configTemplates = (input.configTemplates ?? []).map((t) => ({ path: t.path, template: t.template }));
  const env = check.envVars(d.env, 'defaults.env');
  const secretEnv = check.envVars(d.secretEnv, 'defaults.secretEnv');
  const both = secretEnv.find((v) => env.some((e) => e.name === v.name));
  if (both) throw badInput(`${both.name} is in both defaults.env and defaults.secretEnv; keep it in secretEnv only`, 'defaults.secretEnv');
  checkTemplates(configTemplates, { product: name, env });
  return {
    name,
    description: input.description ?? '',
    versions,
    dependencies,
    defaults: {
      replicas: check.intInRange(d.replicas ?? 1, 'defaults.replicas', 0, 100),
      resources: check.resources(d.resources ?? { cpuMillis: 250, memoryMb: 128 }, 'defaults.resources'),
      ports,
      env,
      secretEnv: sealAll(secretEnv),
      healthcheck,
      stopSignal,
      stopTimeoutSeconds,
      dataPath: d.dataPath ? absolutePath(d.dataPath, 'defaults.dataPath') : null,
      lifecycle: lifecycleOf(d.lifecycle),
    },
    configTemplates,
    requiresExclusiveHosts: Boolean(input.requiresExclusiveHosts),
    updatedAt: now.toISOString(),
  };
}

function absolutePath(path: string, field: string): string {
  if (!/^\/[A-Za-z0-9._\/-]{0,254}$/.test(path) || path.split('/').includes('..')) {
    throw badInput(`${field} "${path}" must be an absolute path in the container, e.g. /var/lib/etcd`, field);
  }
  return path;
}

function lifecycleOf(input: Partial<LifecycleSpec> | null | undefined): LifecycleSpec | null {
  if (!input) return null;
  const hook = (name: keyof LifecycleSpec) => {
    const command = input[name];
    if (!command) return null;
    if (!command.length || command.some((part) => !part.length)) throw badInput(`defaults.lifecycle.${name} must be a command with no empty parts, e.g. ["/usr/local/bin/rejoin"]`, `defaults.lifecycle.${name}`);
    return command;
  };
  const spec = { afterStart: hook('afterStart'), beforeStop: hook('beforeStop'), onReplace: hook('onReplace') };
  return spec.afterStart || spec.beforeStop || spec.onReplace ? spec : null;
}

/** A release's use of product versions: the one it is on, and the one an upgrade in progress or stopped left behind. */
export interface VersionUse {
  name: string;
  product: string;
  versions: string[];
  /** The secrets the release has (its secretEnv's names), which its config templates may use. */
  secretNames: string[];
}

/**
 * Adds a product or replaces its definition. Dropping a version that a release runs is refused, naming the
 * releases, and writes nothing: their instances could not be respecified, scaled or rolled back any more.
 */
export async function defineProduct(store: Store, input: ProductInput, inUse: (product: string) => Promise<VersionUse[]>): Promise<Product> {
  const product = productFromInput(input);
  const kept = new Set(product.versions.map((v) => v.version));
  const users = (await inUse(product.name)).flatMap((u) => u.versions.filter((v) => !kept.has(v)).map((v) => ({ ...u, version: v })));
  if (users.length) {
    const gone = [...new Set(users.map((u) => u.version))];
    throw conflict(`cannot remove version${gone.length > 1 ? 's' : ''} ${gone.join(', ')} of ${product.name}: in use by release${users.length > 1 ? 's' : ''} `
      + `${[...new Set(users.map((u) => `"${u.name}" (${u.version})`))].slice(0, 10).join(', ')}; upgrade or delete them first`);
  }
  // Templates that use a secret a release does not have could not be rendered for its instances any more.
  const needed = secretsUsedBy(product.configTemplates);
  const lacking = (await inUse(product.name)).map((u) => ({ ...u, missing: needed.filter((n) => !u.secretNames.includes(n)) })).filter((u) => u.missing.length);
  if (lacking.length) {
    throw conflict(`the config templates of ${product.name} use secrets that release${lacking.length > 1 ? 's' : ''} `
      + `${lacking.slice(0, 10).map((u) => `"${u.name}" (${u.missing.join(', ')})`).join(', ')} do${lacking.length > 1 ? '' : 'es'} not have; delete and deploy them again with those secrets, or leave the secrets out of the templates`);
  }
  const keepSecrets = input.defaults?.secretEnv == null;
  return (await store.mutate<Product>('products', product.name, (current) =>
    keepSecrets && current?.defaults.secretEnv ? { ...product, defaults: { ...product.defaults, secretEnv: current.defaults.secretEnv } } : product))!;
}

/** The names of the secrets that templates write with {{secret "NAME"}}. */
const secretsUsedBy = (templates: { template: string }[]) =>
  [...new Set(templates.flatMap((t) => [...t.template.matchAll(/\{\{~?\s*secret\s+"([A-Za-z_][A-Za-z0-9_]*)"/g)].map((m) => m[1])))];

/** Removes a product; refused while a release uses it or another product depends on it, naming them. */
export async function deleteProduct(store: Store, name: string, inUse: (product: string) => Promise<VersionUse[]>): Promise<Product> {
  const product = await mustGetProduct(store, name);
  const users = await inUse(name);
  if (users.length) {
    throw conflict(`product ${name} is used by release${users.length > 1 ? 's' : ''} ${users.slice(0, 10).map((u) => `"${u.name}"`).join(', ')}; delete them first`);
  }
  const dependants = (await listProducts(store)).filter((p) => p.dependencies.some((d) => d.product === name));
  if (dependants.length) throw conflict(`product ${name} is a dependency of ${dependants.map((p) => p.name).join(', ')}; change or delete those first`);
  try {
    await store.remove('products', name, product.seq);
  } catch (err) {
    if (err instanceof ConditionFailed) throw conflict(`product ${name} was redefined meanwhile; look at it again before deleting it`);
    throw err;
  }
  return product;
}

export const getProduct = (store: Store, name: string) => store.get<Product>('products', name);

export async function mustGetProduct(store: Store, name: string): Promise<Product> {
  const product = await getProduct(store, name);
  if (!product) throw notFound('product', name);
  return product;
}

export async function listProducts(store: Store): Promise<Product[]> {
  return (await store.scan<Product>('products')).sort((a, b) => a.name.localeCompare(b.name));
}

/** The newest stable version by semver order; a pre-release only when there is nothing else. */
export function latestVersion(product: Product): ProductVersion {
  const newestFirst = [...product.versions].sort((a, b) => semver.rcompare(a.version, b.version));
  return newestFirst.find((v) => !semver.prerelease(v.version)) ?? newestFirst[0];
}
