import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, posix, relative } from 'node:path';
import tables from '../../lib/tables.json';

/**
 * The parts and who may touch what (DESIGN.md, "Parts"): Ark at the base, Panama on Ark, Butler watching both.
 * A part imports another part only through its public module `subgraphs/<part>/index.ts`, and only downward;
 * effects that travel upward go through the hooks the upper part registers. Each table is written by its owner
 * (`owner` in lib/tables.json) and by no other code. Tests and benches may reach into a part; nothing else may.
 */

const LAYERS = ['ark', 'panama', 'butler'] as const;
type Part = (typeof LAYERS)[number];
/** A table is owned by a part, or by a folder outside the parts that keeps state of its own (lib: access control). */
const OWNERS = [...LAYERS, 'lib', 'gateway', 'server'];

const ROOT = join(__dirname, '../..');
const SKIP = new Set(['node_modules', '.git', 'test', 'bench', 'dist', '.fangzhou', '.esbuild', '.serverless', 'coverage']);

function sourceFiles(dir = ROOT, out = new Map<string, string>()): Map<string, string> {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.name.startsWith('.') && entry.isDirectory()) continue;
    if (SKIP.has(entry.name)) continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) sourceFiles(path, out);
    else if (/\.(ts|tsx)$/.test(entry.name) && !entry.name.endsWith('.d.ts')) out.set(relative(ROOT, path).split('\\').join('/'), readFileSync(path, 'utf8'));
  }
  return out;
}

const IMPORT = /(?:\bfrom\s*|\bimport\s*\(\s*|\brequire\s*\(\s*|^\s*import\s+)['"](\.[^'"]+)['"]/gm;

/** The repository paths a file imports (relative specifiers only), without extension or trailing /index. */
function importsOf(file: string, source: string): string[] {
  const out: string[] = [];
  for (const m of source.matchAll(IMPORT)) {
    out.push(posix.normalize(posix.join(dirname(file), m[1])).replace(/\.(ts|tsx|js|json)$/, '').replace(/\/index$/, ''));
  }
  return out;
}

const partOf = (path: string): Part | null => {
  const m = /^subgraphs\/([^/]+)(?:\/|$)/.exec(path);
  return m && (LAYERS as readonly string[]).includes(m[1]) ? (m[1] as Part) : null;
};
const isPublicModule = (path: string) => /^subgraphs\/[^/]+$/.test(path) || path === 'subgraphs';

const WRITE = /\.(create|replace|mutate|remove)\s*(?:<[^()]*?>)?\(\s*['"]([A-Za-z]+)['"]/g;

interface Violation {
  file: string;
  problem: string;
}

/** Every breach of the rules above in these files; empty when the parts are in order. */
function violations(files: Map<string, string>, owners: Record<string, string>): Violation[] {
  const found: Violation[] = [];
  const edges = new Map<Part, Set<Part>>(LAYERS.map((p) => [p, new Set()]));
  for (const [file, source] of files) {
    const from = partOf(file);
    const ownerOfFile = from ?? file.split('/')[0];
    for (const target of importsOf(file, source)) {
      if (target === 'subgraphs' && from) found.push({ file, problem: 'a part imports the whole platform (subgraphs/index.ts); import the part below by its index' });
      const to = partOf(target);
      if (!to || to === from) continue;
      if (file.startsWith('lib/')) found.push({ file, problem: `the shared kernel imports the part ${to}` });
      if (!isPublicModule(target)) found.push({ file, problem: `imports ${target}, an internal module of ${to}; import subgraphs/${to} (its index.ts) instead` });
      if (from) {
        edges.get(from)!.add(to);
        if (LAYERS.indexOf(to) > LAYERS.indexOf(from)) {
          found.push({ file, problem: `${from} imports ${to}, a part above it; report upward through ${from}'s hooks instead` });
        }
      }
    }
    for (const m of source.matchAll(WRITE)) {
      const table = m[2];
      if (!(table in owners)) continue;
      if (owners[table] !== ownerOfFile) found.push({ file, problem: `writes the table ${table} (${m[1]}), which ${owners[table]} owns` });
    }
  }
  const cycle = findCycle(edges);
  if (cycle) found.push({ file: 'subgraphs', problem: `the parts import each other in a circle: ${cycle.join(' → ')}` });
  return found;
}

function findCycle(edges: Map<Part, Set<Part>>): Part[] | null {
  const state = new Map<Part, 'open' | 'done'>();
  const path: Part[] = [];
  const visit = (p: Part): Part[] | null => {
    if (state.get(p) === 'open') return [...path.slice(path.indexOf(p)), p];
    if (state.get(p) === 'done') return null;
    state.set(p, 'open');
    path.push(p);
    for (const next of edges.get(p) ?? []) {
      const found = visit(next);
      if (found) return found;
    }
    path.pop();
    state.set(p, 'done');
    return null;
  };
  for (const p of edges.keys()) {
    const found = visit(p);
    if (found) return found;
  }
  return null;
}

const owners = Object.fromEntries(Object.entries(tables as Record<string, { owner?: string }>).map(([t, d]) => [t, d.owner ?? '']));

test('every table names its owning part', () => {
  const unowned = Object.entries(owners).filter(([, owner]) => !OWNERS.includes(owner)).map(([t]) => t);
  expect(unowned).toEqual([]);
});

test('the parts import each other only downward and only through index.ts, and write only their own tables', () => {
  const files = sourceFiles();
  expect(files.has('subgraphs/ark/index.ts') && files.has('subgraphs/panama/index.ts') && files.has('subgraphs/butler/index.ts')).toBe(true);
  expect(violations(files, owners).map((v) => `${v.file}: ${v.problem}`)).toEqual([]);
});

describe('the check itself catches', () => {
  const file = (path: string, source: string) => [path, source] as [string, string];

  test('an import of another part\'s internals, from a part or from a handler', () => {
    const found = violations(new Map([
      file('subgraphs/panama/releases.ts', "import { placeInstances } from '../ark/instances';"),
      file('handlers/tick.ts', "import { watchHosts } from '../subgraphs/butler/watchdog';"),
    ]), owners);
    expect(found.map((v) => v.file)).toEqual(['subgraphs/panama/releases.ts', 'handlers/tick.ts']);
    expect(found[0].problem).toMatch(/internal module of ark/);
  });

  test('an upward import and a circle between parts', () => {
    const found = violations(new Map([
      file('subgraphs/ark/dispatch.ts', "import { reactToChanges } from '../butler';"),
      file('subgraphs/butler/watch.ts', "import { getInstance } from '../ark';"),
    ]), owners);
    expect(found.map((v) => v.problem)).toEqual([
      'ark imports butler, a part above it; report upward through ark\'s hooks instead',
      expect.stringMatching(/circle: (ark → butler → ark|butler → ark → butler)/),
    ]);
  });

  test('a write to a table another part owns, also through a generic call', () => {
    const found = violations(new Map([
      file('subgraphs/ark/instances.ts', "await store.create<Omit<PlatformEvent, 'seq'>>('events', item);"),
      file('subgraphs/ark/hosts.ts', "await store.mutate<Host>('hosts', id, f); await store.get('events', id);"),
    ]), owners);
    expect(found).toEqual([{ file: 'subgraphs/ark/instances.ts', problem: 'writes the table events (create), which butler owns' }]);
  });
});
