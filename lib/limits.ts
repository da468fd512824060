import {
  getArgumentValues, getNullableType, GraphQLError, isInputObjectType, isListType, Kind, parse, type DocumentNode, type FragmentDefinitionNode,
  type GraphQLInputType, type GraphQLSchema, type OperationDefinitionNode, type SelectionSetNode,
} from 'graphql';
import { AppError } from './errors';
import { config } from './config';

/**
 * Cheap checks on a GraphQL document, run before validation and planning: validating thousands of aliases or a deep
 * selection costs seconds (OverlappingFieldsCanBeMerged is quadratic), parsing a bounded number of tokens does not.
 */
export interface DocumentShape {
  document: DocumentNode;
  /** Deepest selection, fragments expanded. */
  depth: number;
  aliases: number;
  /** Fields selected, fragments expanded (a fragment spread n times counts n times). */
  fields: number;
  /** Root fields per operation type, fragments expanded, e.g. {mutation: ['deploy']}. */
  rootFields: { query: string[]; mutation: string[]; subscription: string[] };
  /** Asks for the schema itself: __schema, __type, or the federation `_service` SDL. */
  introspection: boolean;
}

const INTROSPECTION = new Set(['__schema', '__type', '_service']);
/** graphql-js's getIntrospectionQuery() reaches 13 levels below __schema. */
const INTROSPECTION_DEPTH = 16;

const tooMuch = (what: string, found: number, limit: number, reason: string) =>
  new AppError('BAD_USER_INPUT', `the document has ${what} ${found}; at most ${limit} is accepted: split it into smaller requests`, { reason });

/** Parses within the token limit and measures the document; throws BAD_USER_INPUT when a limit is exceeded. */
export function checkDocument(query: string, limits = config().limits): DocumentShape {
  let document: DocumentNode;
  try {
    document = parse(query, { maxTokens: limits.maxTokens, noLocation: true });
  } catch (err) {
    const message = (err as GraphQLError).message ?? String(err);
    const reason = /contains more th\w* \d+ tokens/.test(message) ? 'TOKEN_LIMIT' : 'GRAPHQL_PARSE_FAILED';
    const text = reason === 'TOKEN_LIMIT' ? `the document has more than ${limits.maxTokens} tokens: split it into smaller requests` : message;
    throw new AppError('BAD_USER_INPUT', text, { reason });
  }
  const shape = measure(document);
  if (shape.depth > limits.maxDepth) throw tooMuch('a depth of', shape.depth, limits.maxDepth, 'DEPTH_LIMIT');
  if (shape.aliases > limits.maxAliases) throw tooMuch('aliases:', shape.aliases, limits.maxAliases, 'ALIAS_LIMIT');
  if (shape.fields > limits.maxFields) throw tooMuch('fields:', shape.fields, limits.maxFields, 'FIELD_LIMIT');
  return shape;
}

export function measure(document: DocumentNode): DocumentShape {
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const d of document.definitions) if (d.kind === Kind.FRAGMENT_DEFINITION) fragments.set(d.name.value, d);

  // Per fragment: [depth, aliases, fields], computed once; a cycle (invalid, validation names it) counts as empty.
  const memo = new Map<string, [number, number, number]>();
  const visiting = new Set<string>();
  let introspection = false;
  const walk = (set: SelectionSetNode | undefined): [number, number, number] => {
    if (!set) return [0, 0, 0];
    let depth = 0, aliases = 0, fields = 0;
    for (const s of set.selections) {
      let sub: [number, number, number];
      if (s.kind === Kind.FIELD) {
        const inner = walk(s.selectionSet);
        sub = [inner[0] + 1, inner[1] + (s.alias ? 1 : 0), inner[2] + 1];
        if (INTROSPECTION.has(s.name.value)) {
          introspection = true;
          // The schema answers introspection without a resolver of ours, and tools' standard query nests `ofType` 8
          // deep: its own depth is bounded separately; it counts as one level against the document's limit.
          if (inner[0] > INTROSPECTION_DEPTH) throw tooMuch('an introspection depth of', inner[0], INTROSPECTION_DEPTH, 'DEPTH_LIMIT');
          sub[0] = 1;
        }
      } else if (s.kind === Kind.INLINE_FRAGMENT) {
        sub = walk(s.selectionSet);
      } else {
        sub = fragment(s.name.value);
      }
      depth = Math.max(depth, sub[0]);
      aliases += sub[1];
      fields += sub[2];
    }
    return [depth, aliases, fields];
  };
  const fragment = (name: string): [number, number, number] => {
    const known = memo.get(name);
    if (known) return known;
    const def = fragments.get(name);
    if (!def || visiting.has(name)) return [0, 0, 0];
    visiting.add(name);
    const result = walk(def.selectionSet);
    visiting.delete(name);
    memo.set(name, result);
    return result;
  };
  const rootNames = (set: SelectionSetNode, seen = new Set<string>()): string[] => set.selections.flatMap((s) => {
    if (s.kind === Kind.FIELD) return [s.name.value];
    if (s.kind === Kind.INLINE_FRAGMENT) return rootNames(s.selectionSet, seen);
    const def = fragments.get(s.name.value);
    if (!def || seen.has(def.name.value)) return [];
    seen.add(def.name.value);
    return rootNames(def.selectionSet, seen);
  });

  const shape: DocumentShape = { document, depth: 0, aliases: 0, fields: 0, rootFields: { query: [], mutation: [], subscription: [] }, introspection: false };
  for (const d of document.definitions) {
    if (d.kind !== Kind.OPERATION_DEFINITION) continue;
    const [depth, aliases, fields] = walk(d.selectionSet);
    shape.depth = Math.max(shape.depth, depth);
    shape.aliases += aliases;
    shape.fields += fields;
    shape.rootFields[d.operation].push(...rootNames(d.selectionSet));
  }
  shape.introspection = introspection;
  return shape;
}

/**
 * The longest text (in characters) an input field accepts, by `InputType.field` or `Mutation.field(argument)`;
 * every other String or ID takes `maxTextChars`. Long enough for real use, short enough that a release with its
 * revisions stays far inside the store's item size.
 */
export const TEXT_LIMITS: Record<string, number> = {
  'EnvVarInput.value': 32 * 1024,
  'ConfigTemplateInput.template': 64 * 1024,
  'ProductInput.description': 4096,
  'ProductVersionInput.notes': 4096,
  'AlertChannelInput.target': 2048,
  'HealthcheckInput.command': 4096,
  'LifecycleInput.afterStart': 4096,
  'LifecycleInput.beforeStop': 4096,
  'LifecycleInput.onReplace': 4096,
  'ObservedContainerInput.error': 16 * 1024,
  'LogLineInput.text': 4096,
};

/**
 * Checks the length of every text in an operation's arguments (variables and literals) against TEXT_LIMITS, before
 * any resolver runs: an oversized value is refused whole, so nothing is written. The error names the field and the
 * limit and never repeats the value.
 */
export function checkArgumentLengths(schema: GraphQLSchema, operation: OperationDefinitionNode, fragments: Record<string, FragmentDefinitionNode>,
  variables: Record<string, unknown> = {}, maxTextChars = config().limits.maxTextChars): void {
  const root = schema.getRootType(operation.operation);
  if (!root) return;
  const check = (value: unknown, type: GraphQLInputType, key: string, field: string): void => {
    const bare = getNullableType(type);
    if (value === null || value === undefined) return;
    if (isListType(bare)) {
      if (Array.isArray(value)) value.forEach((v, i) => check(v, bare.ofType, key, `${field}[${i}]`));
      else check(value, bare.ofType, key, field);
    } else if (isInputObjectType(bare)) {
      for (const f of Object.values(bare.getFields())) {
        check((value as Record<string, unknown>)[f.name], f.type, `${bare.name}.${f.name}`, field ? `${field}.${f.name}` : f.name);
      }
    } else if (typeof value === 'string') {
      const limit = TEXT_LIMITS[key] ?? maxTextChars;
      if (value.length > limit) {
        throw new AppError('BAD_USER_INPUT', `${field} is ${value.length} characters long; at most ${limit} are accepted`, { field, limit, reason: 'LENGTH_LIMIT' });
      }
    }
  };
  const visit = (set: SelectionSetNode, seen: Set<string>): void => {
    for (const s of set.selections) {
      if (s.kind === Kind.FRAGMENT_SPREAD) {
        const def = fragments[s.name.value];
        if (def && !seen.has(def.name.value)) visit(def.selectionSet, new Set([...seen, def.name.value]));
      } else if (s.kind === Kind.INLINE_FRAGMENT) {
        visit(s.selectionSet, seen);
      } else {
        const def = root.getFields()[s.name.value];
        if (!def) continue;
        let values: Record<string, unknown>;
        try {
          values = getArgumentValues(def, s, variables);
        } catch {
          // A value of the wrong type or a missing one: execution refuses it with its own BAD_USER_INPUT.
          continue;
        }
        // `input` is the usual single argument; its fields are named as the domain's own checks name them.
        for (const arg of def.args) check(values[arg.name], arg.type, `${root.name}.${def.name}(${arg.name})`, arg.name === 'input' ? '' : arg.name);
      }
    }
  };
  visit(operation.selectionSet, new Set());
}
