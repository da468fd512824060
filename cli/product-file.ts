/**
 * Product definition files (YAML or JSON, one or more documents each): parsed with `yaml` keeping the documents,
 * so that every problem — a local shape check or a server error naming `extensions.field` — is reported as
 * `file:line: message`. The expected shape is read from the contract itself (`ProductInput` in
 * schema/panama.graphql), so the CLI never disagrees with the API about which fields exist.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Kind, parse, type InputValueDefinitionNode, type TypeNode } from 'graphql';
import { LineCounter, isMap, isPair, isScalar, isSeq, parseAllDocuments, type Document, type Node } from 'yaml';

export interface Problem {
  file: string;
  line: number | null;
  message: string;
}

export const formatProblem = (p: Problem) => `${p.file}${p.line ? `:${p.line}` : ''}: ${p.message}`;

type PathKey = string | number;

/** One product definition: the input to send, and the document it came from (for line numbers). */
export interface ProductDocument {
  file: string;
  input: Record<string, unknown>;
  /**
   * Line of `path` (or of its nearest existing parent) in the file; with `innerLine`, that line of the (multi-line)
   * string at `path`, e.g. the line of a config template the server names.
   */
  lineOf(path: PathKey[], innerLine?: number): number | null;
}

// --- the expected shape, from the SDL --------------------------------------------------------------------------

const SCHEMA_FILE = resolve(__dirname, '../schema/panama.graphql');
let inputTypes: Map<string, readonly InputValueDefinitionNode[]> | undefined;

function inputType(name: string): readonly InputValueDefinitionNode[] | undefined {
  if (!inputTypes) {
    inputTypes = new Map();
    for (const def of parse(readFileSync(SCHEMA_FILE, 'utf8')).definitions) {
      if (def.kind === Kind.INPUT_OBJECT_TYPE_DEFINITION) inputTypes.set(def.name.value, def.fields ?? []);
    }
  }
  return inputTypes.get(name);
}

// --- paths and lines ----------------------------------------------------------------------------------------------

export function formatPath(path: PathKey[]): string {
  return path.reduce<string>((s, k) => (typeof k === 'number' ? `${s}[${k}]` : s ? `${s}.${k}` : k), '');
}

/** `versions[0].image` -> ['versions', 0, 'image']; also accepts `input.` prefixes of GraphQL coercion errors. */
export function parsePath(field: string): PathKey[] {
  const path: PathKey[] = [];
  for (const m of field.matchAll(/([^.[\]]+)|\[(\d+)\]/g)) path.push(m[2] !== undefined ? Number(m[2]) : m[1]);
  return path[0] === 'input' ? path.slice(1) : path;
}

/** The node at `path`, or the deepest existing parent; `key` selects a map entry's key rather than its value. */
function nodeAt(doc: Document, path: PathKey[], key = false): { node: Node | null; exact: boolean } {
  let node = doc.contents as Node | null;
  for (let i = 0; i < path.length && node; i++) {
    const k = path[i];
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && p.key.value === k);
      if (!pair) return { node, exact: false };
      if (key && i === path.length - 1) return { node: pair.key as Node, exact: true };
      node = (pair.value as Node | null) ?? (pair.key as Node);
    } else if (isSeq(node) && typeof k === 'number' && node.items[k]) {
      node = node.items[k] as Node;
    } else {
      return { node, exact: false };
    }
  }
  return { node, exact: true };
}

// --- local validation ---------------------------------------------------------------------------------------------

const MAX_INT = 2 ** 31 - 1;

/** Checks `value` against a GraphQL input type; reports unknown fields, missing ones and wrong types. */
function check(value: unknown, type: TypeNode, path: PathKey[], report: (path: PathKey[], message: string, key?: boolean) => void, source: (path: PathKey[]) => string) {
  const where = formatPath(path) || 'the product';
  if (value === null || value === undefined) {
    if (type.kind === Kind.NON_NULL_TYPE) report(path, `${where} must not be empty`);
    return;
  }
  const t = type.kind === Kind.NON_NULL_TYPE ? type.type : type;
  if (t.kind === Kind.LIST_TYPE) {
    // GraphQL's input coercion: a single value stands for a list of one (the API accepts it the same way).
    if (!Array.isArray(value)) return check(value, t.type, path, report, source);
    value.forEach((item, i) => check(item, t.type, [...path, i], report, source));
    return;
  }
  if (t.kind !== Kind.NAMED_TYPE) return;
  const quoteHint = () => (typeof value === 'number' || typeof value === 'boolean' ? ` (got ${source(path)}; quote it: "${source(path)}")` : '');
  switch (t.name.value) {
    case 'String':
    case 'ID':
      if (typeof value !== 'string') report(path, `${where} must be a string${quoteHint()}`);
      return;
    case 'Int':
      if (typeof value !== 'number' || !Number.isInteger(value) || Math.abs(value) > MAX_INT) report(path, `${where} must be an integer, got ${source(path)}`);
      return;
    case 'Float':
      if (typeof value !== 'number') report(path, `${where} must be a number, got ${source(path)}`);
      return;
    case 'Boolean':
      if (typeof value !== 'boolean') report(path, `${where} must be true or false, got ${source(path)}`);
      return;
  }
  const fields = inputType(t.name.value);
  if (!fields) return; // an enum or custom scalar: the server checks it
  if (typeof value !== 'object' || Array.isArray(value)) return report(path, `${where} must be a mapping with the fields ${fields.map((f) => f.name.value).join(', ')}`);
  const known = new Map(fields.map((f) => [f.name.value, f]));
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    const field = known.get(k);
    if (!field) {
      report([...path, k], `unknown field ${formatPath([...path, k])} (${formatPath(path) || 'a product'} has: ${[...known.keys()].join(', ')})`, true);
      continue;
    }
    check(v, field.type, [...path, k], report, source);
  }
  for (const f of fields) {
    const v = (value as Record<string, unknown>)[f.name.value];
    if (f.type.kind === Kind.NON_NULL_TYPE && !f.defaultValue && v === undefined) report(path, `${formatPath([...path, f.name.value])} is required`);
  }
}

export interface LoadResult {
  products: ProductDocument[];
  problems: Problem[];
}

/** Reads and checks one file; `display` is how the file is named in messages (the path as the user gave it). */
export function loadProductFile(file: string, display = file): LoadResult {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    return { products: [], problems: [{ file: display, line: null, message: `cannot read: ${(err as Error).message}` }] };
  }
  return parseProducts(text, display);
}

export function parseProducts(text: string, file: string): LoadResult {
  const lineCounter = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter, prettyErrors: true, uniqueKeys: true });
  const problems: Problem[] = [];
  const products: ProductDocument[] = [];
  const lineAt = (node: Node | null | undefined) => (node?.range ? lineCounter.linePos(node.range[0]).line : null);
  if (!Array.isArray(docs)) return { products, problems: [{ file, line: null, message: 'not a YAML or JSON file' }] };
  for (const doc of docs) {
    if (doc.errors.length) {
      for (const e of doc.errors) {
        problems.push({ file, line: e.linePos?.[0].line ?? null, message: e.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '') });
      }
      continue;
    }
    if (doc.contents === null) continue; // an empty document (a comment, a trailing ---)
    const lineOf = (path: PathKey[], innerLine?: number, key = false) => {
      const { node, exact } = nodeAt(doc, path, key);
      const start = lineAt(node);
      if (start === null || !exact || !innerLine || !isScalar(node) || !node.range) return start;
      // A block scalar (`template: |`) starts on the line after its indicator; a quoted or plain one on its own line.
      const block = node.type === 'BLOCK_LITERAL' || node.type === 'BLOCK_FOLDED';
      const line = start + innerLine - (block ? 0 : 1);
      return line <= lineCounter.linePos(node.range[1]).line ? line : start;
    };
    const input = doc.toJS({ maxAliasCount: 100 }) as unknown;
    if (typeof input !== 'object' || input === null || Array.isArray(input)) {
      problems.push({ file, line: lineAt(doc.contents as Node), message: 'a product definition must be a mapping (name, versions, defaults, ...)' });
      continue;
    }
    const source = (path: PathKey[]) => {
      const { node } = nodeAt(doc, path);
      return node?.range ? text.slice(node.range[0], node.range[1]).trim() : JSON.stringify(path);
    };
    const before = problems.length;
    check(input, { kind: Kind.NON_NULL_TYPE, type: { kind: Kind.NAMED_TYPE, name: { kind: Kind.NAME, value: 'ProductInput' } } }, [],
      (path, message, key) => problems.push({ file, line: lineOf(path, undefined, key), message }), source);
    if (problems.length === before) products.push({ file, input: input as Record<string, unknown>, lineOf });
  }
  if (problems.length === 0 && products.length === 0) problems.push({ file, line: null, message: 'no product definition in the file' });
  return { products, problems };
}
