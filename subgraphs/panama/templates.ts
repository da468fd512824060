/**
 * Config templates: a product's files (redis.conf, zoo.cfg, ...) written as Handlebars templates and rendered once
 * per instance, in strict mode, with the release, the instance itself and all its peers.
 *
 * `checkTemplates` runs when a product is defined: it parses every template, checks every variable it reads against
 * a sample context (a 3-instance release with the product's default env) and renders it once, so that a syntax error
 * or a misspelled variable fails `defineProduct` instead of a deploy. Each error names the template path, the line and
 * column and the variable, and lists what is available there.
 *
 * What a template can read (see TemplateContext):
 *   {{product.name}}
 *   {{release.id}} {{release.name}} {{release.version}} {{release.replicas}}
 *   {{instance.id}} {{instance.ordinal}} {{instance.number}} {{instance.domainName}} {{instance.ip}}
 *                                                                                   (number = ordinal + 1)
 *   {{#each peers}}server.{{number}}={{domainName}}:2888:3888 # {{ip}}{{/each}}        (all instances, itself too)
 *   {{env.NAME}}  the release's env (the product's defaults.env merged with the deploy's env)
 *
 * Names and addresses: `domainName` is the stable contract (it never changes; DNS follows a member that moves).
 * `ip` is the member's fixed address on the cluster network, for software that needs literal addresses: Ark gives
 * it when the member is placed on a host, it stays while the member stays there, and a member that moves to
 * another host gets a new one. Then every member whose rendered files mention it is re-created with the new
 * address, one at a time behind the health gate (subgraphs/panama/reconcile.ts); files that never write `ip` do
 * not change, so their containers are not touched. Before a member is placed its `ip` is null, which renders as
 * nothing (never a made-up address): `{{#if ip}}...{{/if}}` tests it, `{{default ip "unplaced"}}` names it.
 *
 * Strictness: a value written out ({{release.nmae}}) must exist, or rendering fails. A helper argument that reads a
 * missing env variable is allowed, so optional settings work: {{#if env.TLS}}...{{/if}}, {{default env.PORT "6379"}}.
 * A variable a template writes out must therefore have a default in the product's defaults.env.
 *
 * Helpers, besides Handlebars' if, unless, each, with and lookup:
 *   {{join list ", "}}                 the items of a list of values joined by the separator (default ",")
 *   {{join (pluck peers "domainName") ","}}
 *   (pluck list "field")               the field of every item of a list of objects
 *   {{default value "fallback"}}       the value, or the fallback when the value is missing or ""
 *   {{secret "DB_PASSWORD"}}           a secret of the release (its secretEnv): the file holds a token in its place
 *                                      (⟦secret:DB_PASSWORD⟧) wherever it is stored or shown, and only the runner
 *                                      of the instance's host writes the value into the container. A release
 *                                      without that secret is refused when it is deployed.
 * Partials and decorators are not available. A literal "{{" is written as "\{{".
 */
import Handlebars from 'handlebars';
import { AppError } from '../../lib/errors';
import { secretToken } from '../../lib/secrets';
import type { ConfigFileSpec } from '../../lib/runner-protocol';

export interface ConfigTemplate {
  /** Absolute path inside the container. */
  path: string;
  template: string;
}

export interface TemplateInstance {
  id: string;
  ordinal: number;
  /** ordinal + 1: ZooKeeper's myid, etcd member numbers and the like start at 1. */
  number: number;
  domainName: string;
  /** Its fixed address on the cluster network; null until it is placed on a host (see the comment at the top). */
  ip: string | null;
}

export interface TemplateContext {
  product: { name: string };
  release: { id: string; name: string; version: string; replicas: number };
  instance: TemplateInstance;
  /** Every instance of the release in ordinal order, including this one. */
  peers: TemplateInstance[];
  env: Record<string, string>;
}

/** The release fields a context is built from (a Release item has them all). */
export interface TemplateRelease {
  id: string;
  name: string;
  version: string;
  replicas: number;
  /** The release's effective env: the product's defaults merged with the deploy's env. */
  env: { name: string; value: string }[];
}

/** One instance of the release as far as templates care. */
export interface TemplatePeer {
  id: string;
  ordinal: number;
  domainName: string;
  /** Absent or null: not placed yet. */
  ip?: string | null;
}

/**
 * The context one instance's templates are rendered with. `instances` are all instances of the release (any
 * order; the peers come out in ordinal order), `ordinal` picks the instance being rendered.
 */
export function templateContext(
  release: TemplateRelease, product: { name: string }, instances: TemplatePeer[], ordinal: number,
): TemplateContext {
  const peers = [...instances]
    .sort((a, b) => a.ordinal - b.ordinal)
    .map((i) => ({ id: i.id, ordinal: i.ordinal, number: i.ordinal + 1, domainName: i.domainName, ip: i.ip ?? null }));
  const instance = peers.find((p) => p.ordinal === ordinal);
  if (!instance) throw new AppError('INTERNAL', `templateContext: release ${release.id} has no instance with ordinal ${ordinal}`);
  return {
    product: { name: product.name },
    release: { id: release.id, name: release.name, version: release.version, replicas: release.replicas },
    instance: { ...instance },
    peers,
    env: Object.fromEntries(release.env.map((e) => [e.name, e.value])),
  };
}

/**
 * Renders every template for one instance; the error of a template that fails names its path, line and variable.
 * `secrets`: the names of the release's secrets, which {{secret "NAME"}} may use (null: any name, for a product's
 * sample render before any release has secrets).
 */
export function renderTemplates(templates: ConfigTemplate[], ctx: TemplateContext, secrets: string[] | null = []): ConfigFileSpec[] {
  return templates.map((t, index) => {
    try {
      return { path: t.path, content: compiled(t.template)(ctx, { data: { secrets } }) };
    } catch (err) {
      // Our own check explains a missing variable better than Handlebars does ("name" not defined in undefined).
      const precise = problemIn(t.template, ctx);
      throw toAppError(t, index, precise ?? problemFromError(err, t.template));
    }
  });
}

export interface SampleInput {
  /** The product's name. */
  product?: string;
  /** A version of the product; the sample release runs it. */
  version?: string;
  /** The product's defaults.env. */
  env?: { name: string; value: string }[];
}

const PATH = /^(\/[A-Za-z0-9._@+=-]+)+$/;

/**
 * Checks templates when a product is defined: paths (absolute, plain characters, no "." or ".." segments, each path
 * once), syntax, every variable against a sample 3-instance release with the product's default env, and a render
 * with addresses and one without (as before placement), so a template that writes `ip` works both ways.
 * Throws BAD_USER_INPUT with `extensions.field` = `configTemplates[i].path` or `configTemplates[i].template`.
 */
export function checkTemplates(templates: ConfigTemplate[], sample: SampleInput = {}): void {
  const seen = new Set<string>();
  templates.forEach((t, i) => {
    const field = `configTemplates[${i}].path`;
    if (!PATH.test(t.path) || t.path.split('/').some((s) => s === '.' || s === '..')) {
      throw new AppError('BAD_USER_INPUT', `configTemplates[${i}].path "${t.path}" must be an absolute path inside the container made of letters, digits and . _ @ + = - (no "." or ".." segments)`, { field });
    }
    if (seen.has(t.path)) throw new AppError('BAD_USER_INPUT', `configTemplates lists the path ${t.path} twice`, { field });
    seen.add(t.path);
  });
  const ctx = sampleContext(sample);
  templates.forEach((t, index) => {
    const problem = problemIn(t.template, ctx);
    if (problem) throw toAppError(t, index, problem);
  });
  renderTemplates(templates, ctx, null);
  renderTemplates(templates, sampleContext(sample, false), null);
}

/**
 * The context checkTemplates renders with: release "sample" with 3 instances, placed (addresses from the
 * documentation range 192.0.2.0/24, so a sample never looks like a real member) or not yet (`ip` null).
 */
export function sampleContext(sample: SampleInput = {}, placed = true): TemplateContext {
  const release = { id: 'r-sample', name: 'sample', version: sample.version ?? '1.0.0', replicas: 3, env: sample.env ?? [] };
  const instances = [0, 1, 2].map((ordinal) => ({
    id: `r-sample-${ordinal}`, ordinal, domainName: `sample-${ordinal}.sample.fz.internal`, ip: placed ? `192.0.2.${10 + ordinal}` : null,
  }));
  return templateContext(release, { name: sample.product ?? 'sample' }, instances, 0);
}

// ---------------------------------------------------------------------------------------------------------------
// Handlebars instance and helpers

type Loc = { line: number; column: number };

/** An error thrown by one of our helpers, with where the helper was called. */
class HelperError extends Error {
  constructor(message: string, readonly loc: Loc | null) {
    super(message);
  }
}

interface CallOptions {
  name: string;
  loc?: { start: Loc };
  data?: { secrets?: string[] | null };
}

const hb = Handlebars.create();

function helper(name: string, fn: (args: unknown[], options: CallOptions) => unknown): void {
  hb.registerHelper(name, (...all: unknown[]) => {
    const options = all.pop() as CallOptions;
    return fn(all, options);
  });
}

const fail = (options: CallOptions, message: string) => {
  throw new HelperError(message, options.loc?.start ?? null);
};

helper('join', ([list, separator = ','], o) => {
  if (!Array.isArray(list)) return fail(o, 'join expects a list as its first argument, e.g. {{join (pluck peers "domainName") ","}}');
  if (list.some((x) => x !== null && typeof x === 'object')) {
    return fail(o, 'join expects a list of values, not of objects: pick a field first, e.g. {{join (pluck peers "domainName") ","}}');
  }
  return list.join(String(separator));
});

helper('pluck', ([list, field], o) => {
  if (!Array.isArray(list)) return fail(o, 'pluck expects a list as its first argument, e.g. (pluck peers "domainName")');
  if (typeof field !== 'string') return fail(o, 'pluck expects a field name as its second argument, e.g. (pluck peers "domainName")');
  return list.map((item) => {
    if (item === null || typeof item !== 'object' || !Object.prototype.hasOwnProperty.call(item, field)) {
      return fail(o, `pluck: an item has no field "${field}"${item && typeof item === 'object' ? `; available: ${Object.keys(item).join(', ')}` : ''}`);
    }
    return (item as Record<string, unknown>)[field];
  });
});

helper('default', ([value, fallback]) => (value === undefined || value === null || value === '' ? fallback : value));

helper('secret', ([name, ...rest], o) => {
  if (typeof name !== 'string' || rest.length || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
    return fail(o, 'secret expects one secret name in quotes, e.g. {{secret "DB_PASSWORD"}}');
  }
  const secrets = o.data?.secrets;
  if (secrets && !secrets.includes(name)) {
    return fail(o, `the secret ${name} is not among the release's secrets (${secrets.length ? secrets.join(', ') : 'it has none'}): deploy it with secretEnv ${name}, or give the product a default secret ${name}`);
  }
  return secretToken(name);
});

const BLOCK_HELPERS = new Set(['if', 'unless', 'each', 'with']);
const HELPERS = new Set([...BLOCK_HELPERS, 'lookup', 'join', 'pluck', 'default', 'secret']);
const HELPER_LIST = 'join, pluck, default, secret, lookup, if, unless, each, with';

const cache = new Map<string, Handlebars.TemplateDelegate>();

function compiled(source: string): Handlebars.TemplateDelegate {
  let template = cache.get(source);
  if (!template) {
    template = hb.compile(source, { strict: true, noEscape: true });
    if (cache.size >= 200) cache.clear();
    cache.set(source, template);
  }
  return template;
}

// ---------------------------------------------------------------------------------------------------------------
// Problems: where (1-based line and column) and what

interface Problem {
  line: number | null;
  column: number | null;
  detail: string;
}

function toAppError(t: ConfigTemplate, index: number, p: Problem): AppError {
  const where = p.line === null ? '' : `, line ${p.line}${p.column === null ? '' : `, column ${p.column}`}`;
  return new AppError('BAD_USER_INPUT', `config template ${t.path}${where}: ${p.detail}`, {
    field: `configTemplates[${index}].template`,
    ...(p.line === null ? {} : { line: p.line }),
    ...(p.column === null ? {} : { column: p.column }),
  });
}

/** Handlebars reports lines from 1 and columns from 0; people count columns from 1. */
function problemFromError(err: unknown, source: string): Problem {
  if (err instanceof HelperError) {
    return { line: err.loc?.line ?? null, column: err.loc ? err.loc.column + 1 : null, detail: err.message };
  }
  const e = err as { message?: string; lineNumber?: number; column?: number };
  const message = String(e.message ?? err);
  if (message.startsWith('Parse error on line') || message.startsWith('Lexical error on line')) return parseProblem(message, source);
  // Handlebars' own exceptions carry the location and append " - line:column" to the message.
  const plain = message.replace(/ - \d+:\d+$/, '');
  const mismatch = /^(\S+) doesn't match (\S+)$/.exec(plain);
  const detail = mismatch ? `syntax error: the {{#${mismatch[1]}}} block is closed by {{/${mismatch[2]}}}` : plain;
  if (typeof e.lineNumber === 'number') {
    return { line: e.lineNumber, column: typeof e.column === 'number' ? e.column + 1 : null, detail };
  }
  const at = / - (\d+):(\d+)$/.exec(message);
  return at ? { line: Number(at[1]), column: Number(at[2]) + 1, detail } : { line: null, column: null, detail };
}

interface LexerState {
  yylloc?: { first_line?: number; first_column?: number };
  match?: string;
}

/**
 * A syntax error. Handlebars' message has the line ("Parse error on line 3:"); the column is the position of the
 * offending token, which the (shared, synchronous) lexer still holds right after the failed parse.
 */
function parseProblem(message: string, source: string): Problem {
  const lexer = (hb as unknown as { Parser?: { lexer?: LexerState } }).Parser?.lexer;
  const lineFromMessage = Number(/on line (\d+)/.exec(message)?.[1] ?? NaN);
  const loc = lexer?.yylloc;
  const sameLine = loc && loc.first_line === lineFromMessage && typeof loc.first_column === 'number';
  const line = Number.isFinite(lineFromMessage) ? lineFromMessage : null;
  const column = sameLine ? loc.first_column! + 1 : null;
  const got = /got '([A-Z_]+)'\s*$/.exec(message)?.[1];
  const text = lexer?.match ?? '';
  if (got === 'EOF') {
    const open = unclosed(source);
    if (open) return open;
  }
  let detail: string;
  if (got === 'EOF') detail = 'syntax error: the template ends inside an open block or tag; close every {{#block}} with {{/block}} and every {{ with }}';
  else if (got === 'OPEN_ENDBLOCK') detail = 'syntax error: a {{/...}} closes a block that was not opened here';
  else if (got === 'INVERSE') detail = 'syntax error: {{else}} is not allowed here';
  else if (message.startsWith('Lexical error')) detail = 'syntax error: unrecognised text';
  else detail = `syntax error: unexpected ${text ? `"${text}"` : (got ?? 'text')}`;
  const near = line === null ? '' : sourceLine(source, line).trim();
  return { line, column, detail: near ? `${detail} (near "${clip(near)}")` : detail };
}

/** Where a template that ends too early went wrong: a last tag without "}}", or the innermost block never closed. */
function unclosed(source: string): Problem | null {
  const at = (offset: number) => {
    const before = source.slice(0, offset).split('\n');
    return { line: before.length, column: before[before.length - 1].length + 1 };
  };
  const lastOpen = source.lastIndexOf('{{');
  if (lastOpen >= 0 && source.indexOf('}}', lastOpen) < 0) {
    return { ...at(lastOpen), detail: `syntax error: "${clip(source.slice(lastOpen).split('\n')[0])}" is not closed with }}` };
  }
  const blocks: { name: string; offset: number }[] = [];
  for (const m of source.matchAll(/\{\{~?\s*([#^/])\s*([^\s}~]+)/g)) {
    if (m[1] === '/') {
      if (blocks.length && blocks[blocks.length - 1].name === m[2]) blocks.pop();
    } else {
      blocks.push({ name: m[2], offset: m.index! });
    }
  }
  const innermost = blocks.pop();
  if (!innermost) return null;
  return { ...at(innermost.offset), detail: `syntax error: {{#${innermost.name}}} is never closed with {{/${innermost.name}}}` };
}

const sourceLine = (source: string, line: number) => source.split('\n')[line - 1] ?? '';
const clip = (s: string, max = 60) => (s.length > max ? `${s.slice(0, max - 1)}…` : s);

/** The tag that starts at the location, e.g. `{{relase.name}}`, for messages. */
function tagAt(source: string, loc: Loc): string {
  const text = sourceLine(source, loc.line).slice(loc.column);
  const end = text.indexOf('}}');
  const tag = end < 0 ? text : text.slice(0, end + (text[end + 2] === '}' ? 3 : 2));
  return clip(tag.replace(/\s+/g, ' '));
}

// ---------------------------------------------------------------------------------------------------------------
// The variable check: walks the template's syntax tree with a context, following each/with into their items.

/** The value of a scope that cannot be known before rendering (a helper's result): nothing under it is checked. */
const UNKNOWN = Symbol('unknown');

interface Scope {
  value: unknown;
  /** How messages name the scope's value: "" at the top, "release", "an item of peers", ... */
  label: string;
  parent: Scope | null;
  blockParams: Map<string, unknown>;
  /** @index, @key, @first, @last inside each. */
  data: Record<string, unknown> | null;
}

class Found extends Error {
  constructor(readonly problem: Problem) {
    super(problem.detail);
  }
}

type Node = hbs.AST.Node;
type Path = hbs.AST.PathExpression;

/** The first problem with the template's syntax or variables for this context, or null. */
function problemIn(source: string, ctx: TemplateContext): Problem | null {
  let program: hbs.AST.Program;
  try {
    program = hb.parse(source);
  } catch (err) {
    return problemFromError(err, source);
  }
  const checker = new Checker(source, ctx);
  try {
    checker.program(program, { value: ctx, label: '', parent: null, blockParams: new Map(), data: null });
    return null;
  } catch (err) {
    if (err instanceof Found) return err.problem;
    return null; // a construct the check does not follow: the strict render still judges the template
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object';
const hasOwn = (v: object, key: string) => Object.prototype.hasOwnProperty.call(v, key);
const scoped = (p: Path) => p.depth > 0 || /^(\.|this\b)/.test(p.original);
/** X of a path env.X (or @root.env.X), the form a guard takes. */
const envName = (e: hbs.AST.Expression | undefined) =>
  e?.type === 'PathExpression' ? /^(?:@root\.)?env\.([A-Za-z_][A-Za-z0-9_]*)$/.exec((e as Path).original)?.[1] ?? null : null;
const simpleName = (p: Path) => !p.data && !scoped(p) && p.parts.length === 1 ? p.parts[0] : null;

const EMPTY = { type: 'Program', body: [], blockParams: [] } as unknown as hbs.AST.Program;

class Checker {
  /** Env variables that are missing but guarded: inside {{#if env.X}} (or the else of unless), X may be read. */
  private readonly guarded: string[] = [];

  constructor(private readonly source: string, private readonly ctx: TemplateContext) {}

  program(program: hbs.AST.Program, scope: Scope): void {
    for (const statement of program.body) this.statement(statement, scope);
  }

  private fail(at: Node, tagLoc: Node, detail: string): never {
    const { line, column } = at.loc.start;
    throw new Found({ line, column: column + 1, detail: `"${tagAt(this.source, tagLoc.loc.start)}" — ${detail}` });
  }

  private statement(node: Node, scope: Scope): void {
    switch (node.type) {
      case 'ContentStatement':
      case 'CommentStatement':
        return;
      case 'MustacheStatement':
        return this.mustache(node as hbs.AST.MustacheStatement, scope);
      case 'BlockStatement':
        return this.block(node as hbs.AST.BlockStatement, scope);
      case 'PartialStatement':
      case 'PartialBlockStatement':
        return this.fail(node, node, 'partials ({{> name}}) are not available in config templates');
      default:
        return this.fail(node, node, `${node.type} is not available in config templates`);
    }
  }

  private isHelperCall(path: Path, params: hbs.AST.Expression[], hash: hbs.AST.Hash | undefined): boolean {
    const name = simpleName(path);
    return params.length > 0 || (hash?.pairs.length ?? 0) > 0 || (name !== null && HELPERS.has(name));
  }

  private mustache(m: hbs.AST.MustacheStatement, scope: Scope): void {
    if (m.path.type !== 'PathExpression') return; // {{"literal"}}
    const path = m.path as Path;
    if (this.isHelperCall(path, m.params, m.hash)) {
      this.helperName(path, m, false);
      this.args(m.params, m.hash, scope, m);
      return;
    }
    const value = this.resolve(path, scope, false, m);
    if (isObject(value)) {
      const hint = Array.isArray(value)
        ? `write its items with {{#each ${path.original}}}...{{/each}} or {{join (pluck ${path.original} "field") ","}}`
        : `write one of its fields: ${Object.keys(value).map((k) => `${path.original}.${k}`).join(', ')}`;
      this.fail(path, m, `"${path.original}" is ${Array.isArray(value) ? 'a list' : 'an object'}, not a single value; ${hint}`);
    }
  }

  private helperName(path: Path, at: Node, block: boolean): void {
    const name = simpleName(path);
    if (name === null || !HELPERS.has(name)) {
      this.fail(path, at, `"${path.original}" is not a helper; available helpers: ${HELPER_LIST}`);
    }
    if (block && !BLOCK_HELPERS.has(name)) this.fail(path, at, `"${name}" is not a block helper; write {{${name} ...}} without "#"`);
  }

  /** Helper arguments: a missing env variable is allowed here (optional settings), any other missing name is not. */
  private args(params: hbs.AST.Expression[], hash: hbs.AST.Hash | undefined, scope: Scope, at: Node): unknown[] {
    for (const pair of hash?.pairs ?? []) this.arg(pair.value, scope, at);
    return params.map((p) => this.arg(p, scope, at));
  }

  private arg(e: hbs.AST.Expression, scope: Scope, at: Node): unknown {
    switch (e.type) {
      case 'PathExpression':
        return this.resolve(e as Path, scope, true, at);
      case 'SubExpression': {
        const sub = e as hbs.AST.SubExpression;
        this.helperName(sub.path, at, false);
        this.args(sub.params, sub.hash, scope, at);
        return UNKNOWN;
      }
      default:
        return (e as unknown as { value?: unknown }).value;
    }
  }

  private block(b: hbs.AST.BlockStatement, scope: Scope): void {
    // {{^list}}...{{/list}} has only an inverse.
    const program = b.program ?? EMPTY;
    const path = b.path;
    const name = simpleName(path);
    let value: unknown;
    let label: string;
    if (this.isHelperCall(path, b.params, b.hash)) {
      this.helperName(path, b, true);
      const [first] = this.args(b.params, b.hash, scope, b);
      value = first;
      label = b.params[0]?.type === 'PathExpression' ? (b.params[0] as Path).original : 'the list';
    } else {
      // {{#release}}...{{/release}}: a section over a value, list or object.
      value = this.resolve(path, scope, false, b);
      label = path.original;
    }
    // A section ({{#release}}) over a list repeats like each, over an object enters it like with.
    const section = name === null || !HELPERS.has(name);
    const known = value === undefined ? UNKNOWN : value;
    if (name === 'each' || (section && Array.isArray(value))) {
      const entries = Array.isArray(value) ? value.map((v, i) => [i, v] as const) : isObject(value) ? Object.entries(value) : [];
      const [key, item] = entries[0] ?? [0, UNKNOWN];
      const params = new Map<string, unknown>();
      const names = program.blockParams ?? [];
      if (names[0]) params.set(names[0], item);
      if (names[1]) params.set(names[1], key);
      const data = { index: typeof key === 'number' ? key : 0, key, first: true, last: entries.length <= 1 };
      this.program(program, { value: known === UNKNOWN ? UNKNOWN : item, label: `an item of ${label}`, parent: scope, blockParams: params, data });
    } else if (name === 'with' || (section && isObject(value))) {
      const params = new Map<string, unknown>();
      if (program.blockParams?.[0]) params.set(program.blockParams[0], known);
      this.program(program, { value: known, label, parent: scope, blockParams: params, data: null });
    } else {
      const missingEnv = (name === 'if' || name === 'unless') && value === undefined ? envName(b.params[0]) : null;
      this.guard(name === 'if' ? missingEnv : null, () => this.program(program, scope));
      if (b.inverse) this.guard(name === 'unless' ? missingEnv : null, () => this.program(b.inverse, scope));
      return;
    }
    if (b.inverse) this.program(b.inverse, scope);
  }

  private guard(envVar: string | null, walk: () => void): void {
    if (envVar) this.guarded.push(envVar);
    try {
      walk();
    } finally {
      if (envVar) this.guarded.pop();
    }
  }

  private resolve(p: Path, scope: Scope, lenient: boolean, at: Node): unknown {
    let value: unknown;
    let label: string;
    let rest = p.parts;
    if (p.data) {
      const [head, ...tail] = p.parts;
      rest = tail;
      if (head === 'root') {
        value = this.ctx;
        label = '';
      } else {
        const frames: Record<string, unknown>[] = [];
        for (let s: Scope | null = scope; s; s = s.parent) if (s.data) frames.push(s.data);
        const frame = frames[p.depth];
        if (!frame || !hasOwn(frame, head)) {
          this.fail(p, at, `"@${head}" is not defined here; inside {{#each}} there are @index, @key, @first and @last, and @root everywhere`);
        }
        value = frame[head];
        label = `@${head}`;
      }
    } else {
      let s = scope;
      for (let d = 0; d < p.depth; d++) {
        if (!s.parent) this.fail(p, at, `"${p.original}" goes above the top of the template`);
        s = s.parent;
      }
      const param = !scoped(p) && rest.length ? this.blockParam(scope, rest[0]) : undefined;
      if (param) {
        value = param.value;
        label = rest[0];
        rest = rest.slice(1);
      } else {
        value = s.value;
        label = s.label;
      }
    }
    for (const part of rest) {
      if (value === UNKNOWN) return UNKNOWN;
      if (!isObject(value) || !hasOwn(value, part)) {
        if ((lenient || this.guarded.includes(part)) && value === this.ctx.env) return undefined;
        this.fail(p, at, this.missing(part, value, label));
      }
      value = value[part];
      label = label ? `${label}.${part}` : part;
    }
    return value;
  }

  private blockParam(scope: Scope, name: string): { value: unknown } | undefined {
    for (let s: Scope | null = scope; s; s = s.parent) if (s.blockParams.has(name)) return { value: s.blockParams.get(name) };
    return undefined;
  }

  private missing(part: string, value: unknown, label: string): string {
    if (!isObject(value)) return `"${label}" is ${value === undefined ? 'not defined' : `a ${typeof value}`}, it has no "${part}"`;
    const keys = Object.keys(value);
    if (value === this.ctx.env) {
      return `"${part}" is not defined in env; available: ${keys.join(', ') || 'none'}. Give it a default in the product's defaults.env, `
        + `or write {{default env.${part} "value"}}`;
    }
    if (Array.isArray(value)) return `"${label}" is a list of ${value.length}; it has no "${part}" (use {{#each ${label}}} or ${label}.[0])`;
    return `"${part}" is not defined${label ? ` on ${label}` : ''}; available: ${keys.join(', ')}`;
  }
}
