import semver from 'semver';
import { AppError, badInput } from '../../lib/errors';
import type { Product } from './products';

export interface ResolvedProduct {
  product: Product;
  version: string;
  /** Products whose dependency pulled this one in; empty for a requested product nobody depends on. */
  requiredBy: string[];
  /** The version ranges those products ask for. */
  ranges: string[];
}

/**
 * Orders products so that every dependency comes before its dependants and picks, for each, the newest stable
 * version that satisfies every range asked of it. A cycle or an unsatisfiable range is an error naming the chain.
 * Pure: `catalog` holds every product that may be needed.
 */
export function resolveDependencies(requested: string[], catalog: Map<string, Product>): ResolvedProduct[] {
  if (!requested.length) throw badInput('name at least one product', 'products');
  const order: string[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const ranges = new Map<string, { range: string; from: string }[]>();
  const visit = (name: string, chain: string[]) => {
    const product = catalog.get(name);
    if (!product) {
      const via = chain.length ? ` (required by ${chain.join(' → ')})` : '';
      throw new AppError('NOT_FOUND', `product "${name}" does not exist${via}`);
    }
    if (state.get(name) === 'done') return;
    if (state.get(name) === 'visiting') {
      const cycle = [...chain.slice(chain.indexOf(name)), name];
      throw badInput(`dependency cycle: ${cycle.join(' → ')}`, 'products');
    }
    state.set(name, 'visiting');
    for (const dep of product.dependencies) {
      ranges.set(dep.product, [...(ranges.get(dep.product) ?? []), { range: dep.versionRange, from: name }]);
      visit(dep.product, [...chain, name]);
    }
    state.set(name, 'done');
    order.push(name);
  };
  for (const name of requested) visit(name, []);

  return order.map((name) => {
    const product = catalog.get(name)!;
    const wanted = ranges.get(name) ?? [];
    const versions = product.versions.map((v) => v.version);
    const fits = versions.filter((v) => wanted.every((w) => semver.satisfies(v, w.range)));
    const stable = fits.filter((v) => !semver.prerelease(v));
    const version = semver.rsort(stable.length ? stable : fits)[0];
    if (!version) {
      const asks = wanted.map((w) => `${w.range} (required by ${w.from})`).join(' and ');
      throw badInput(`no version of ${name} satisfies ${asks}; available: ${versions.join(', ')}`, 'products');
    }
    return { product, version, requiredBy: [...new Set(wanted.map((w) => w.from))], ranges: wanted.map((w) => w.range) };
  });
}

/** An existing release a deploy may rely on for a dependency. */
export interface ExistingRelease { id: string; product: string; version: string }

export interface DependencyPlan {
  /** Dependency product → the existing release that the new releases needing it depend on. */
  uses: Map<string, string>;
  /** The products to create a release of, dependencies first, the requested product last. */
  creates: ResolvedProduct[];
}

/**
 * What a deploy of `requested` takes, from its resolved dependencies: each dependency a new release needs is the
 * first of `existing` whose version satisfies every range asked of it, or else a new release of its own, which needs
 * its dependencies in turn. What an existing release provides needs nothing more (it has its own dependencies). Pure.
 */
export function dependencyPlan(requested: string, resolved: ResolvedProduct[], existing: ExistingRelease[]): DependencyPlan {
  const byName = new Map(resolved.map((r) => [r.product.name, r]));
  const uses = new Map<string, string>();
  const creates: ResolvedProduct[] = [];
  const seen = new Set<string>();
  const need = (name: string) => {
    if (seen.has(name)) return;
    seen.add(name);
    const wanted = byName.get(name)!;
    const suitable = name === requested ? undefined
      : existing.find((e) => e.product === name && wanted.ranges.every((range) => semver.satisfies(e.version, range)));
    if (suitable) return void uses.set(name, suitable.id);
    for (const d of wanted.product.dependencies) need(d.product);
    creates.push(wanted);
  };
  need(requested);
  return { uses, creates };
}
