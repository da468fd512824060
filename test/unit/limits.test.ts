import { checkDocument, measure } from '../../lib/limits';
import { brief } from '../../lib/graphql-lambda';
import { getIntrospectionQuery, parse } from 'graphql';

const limits = { maxBodyBytes: 1 << 20, maxAnonymousBodyBytes: 8192, maxTokens: 20_000, maxDepth: 12, maxAliases: 30, maxFields: 1000, maxTextChars: 1024, mutationsPerMinute: 1, runnerSyncsPerMinute: 1 };
const codeOf = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    return (err as { extensions: { code: string; reason: string } }).extensions;
  }
  return undefined;
};

test('measures depth, aliases and fields with fragments expanded', () => {
  const shape = measure(parse(`
    query { releases { ...r } a: releases { ...r } }
    fragment r on Release { id instances { id host { name } } }`));
  expect(shape).toMatchObject({ depth: 4, aliases: 1, fields: 12, introspection: false, rootFields: { query: ['releases', 'releases'], mutation: [] } });
});

test('names the root fields of mutations, also behind fragments', () => {
  const shape = measure(parse('mutation { ...m deploy(input: {name: "a", product: "b"}) { id } } fragment m on Mutation { runnerSync(input: {observed: []}) { hostId } }'));
  expect(shape.rootFields.mutation.sort()).toEqual(['deploy', 'runnerSync']);
});

test('a fragment cycle does not loop (validation reports it later)', () => {
  expect(measure(parse('{ ...a } fragment a on Query { ...b } fragment b on Query { ...a }')).fields).toBe(0);
});

test('introspection and the federation SDL are recognised anywhere in the document', () => {
  expect(measure(parse('{ __schema { types { name } } }')).introspection).toBe(true);
  expect(measure(parse('{ x: _service { sdl } }')).introspection).toBe(true);
  expect(measure(parse('{ releases { __typename } }')).introspection).toBe(false);
});

test('a document over a limit is refused with a code and the limit in the message', () => {
  const aliases = `{ ${Array.from({ length: 5000 }, (_, i) => `a${i}: __typename`).join(' ')} }`;
  expect(codeOf(() => checkDocument(aliases, limits))).toEqual({ code: 'BAD_USER_INPUT', reason: 'ALIAS_LIMIT' });
  const deep = `{ ${'releases { instances { release { '.repeat(10)}id${' } } }'.repeat(10)} }`;
  expect(codeOf(() => checkDocument(deep, limits))).toEqual({ code: 'BAD_USER_INPUT', reason: 'DEPTH_LIMIT' });
  const wide = `{ releases { ...f } } fragment f on Release { ${'id '.repeat(1001)} }`;
  expect(codeOf(() => checkDocument(wide, limits))).toEqual({ code: 'BAD_USER_INPUT', reason: 'FIELD_LIMIT' });
  const tokens = `{ releases(${'a: 1 '.repeat(8000)}) { id } }`;
  expect(codeOf(() => checkDocument(tokens, limits))).toEqual({ code: 'BAD_USER_INPUT', reason: 'TOKEN_LIMIT' });
  expect(codeOf(() => checkDocument('{ releases { ', limits))).toEqual({ code: 'BAD_USER_INPUT', reason: 'GRAPHQL_PARSE_FAILED' });
  expect(codeOf(() => checkDocument('{ releases { id instances { id } } }', limits))).toBeUndefined();
});

test('the standard introspection query of tools passes; a deeper introspection is refused', () => {
  expect(checkDocument(getIntrospectionQuery(), limits).introspection).toBe(true);
  const deep = `{ __schema { types { ${'ofType { '.repeat(20)}name${' }'.repeat(20)} } } }`;
  expect(codeOf(() => checkDocument(deep, limits))).toEqual({ code: 'BAD_USER_INPUT', reason: 'DEPTH_LIMIT' });
});

test('an error message quotes a long value by its start and its length', () => {
  expect(brief(`product "${'x'.repeat(100_000)}" does not exist`)).toBe(`product "${'x'.repeat(40)}…" (100000 characters) does not exist`);
  expect(brief('x'.repeat(5_000))).toHaveLength(1_000 + '… (5000 characters)'.length);
});
