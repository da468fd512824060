// @ts-check
/**
 * The store's tables, declared once: lib/store.ts creates them locally (dynalite, DynamoDB Local) and serverless.yml
 * declares the same ones as CloudFormation resources. Plain CommonJS because serverless.yml loads it directly.
 *
 * An index is either an attribute name (a hash key only) or `{hash, range, rangeType}`: a range key orders the
 * items of one hash value (`rangeType` "N" for numbers, "S" by default), so a list is a Query on it, never a Scan.
 */
const tables = require('./tables.json');

/** @typedef {{ hash: string, range?: string, rangeType?: string }} IndexKey */
/** @typedef {{ key: string, indexes?: Record<string, string | IndexKey> }} TableDef */

/** @param {string | IndexKey} def @returns {IndexKey} */
const indexKey = (def) => (typeof def === 'string' ? { hash: def } : def);

/** @param {TableDef} def */
function indexesOf(def) {
  return Object.entries(def.indexes ?? {}).map(([name, key]) => ({ name, ...indexKey(key) }));
}

/** @param {string} prefix @returns {import('@aws-sdk/client-dynamodb').CreateTableCommandInput[]} */
function createTableInputs(prefix) {
  return Object.entries(/** @type {Record<string, TableDef>} */ (tables)).map(([name, def]) => {
    const indexes = indexesOf(def);
    /** @type {Map<string, import('@aws-sdk/client-dynamodb').ScalarAttributeType>} */
    const attributes = new Map([[def.key, /** @type {const} */ ('S')]]);
    for (const i of indexes) {
      attributes.set(i.hash, 'S');
      if (i.range) attributes.set(i.range, i.rangeType === 'N' ? 'N' : 'S');
    }
    return {
      TableName: `${prefix}${name}`,
      BillingMode: /** @type {const} */ ('PAY_PER_REQUEST'),
      KeySchema: [{ AttributeName: def.key, KeyType: /** @type {const} */ ('HASH') }],
      AttributeDefinitions: [...attributes].map(([a, type]) => ({ AttributeName: a, AttributeType: type })),
      ...(indexes.length ? {
        GlobalSecondaryIndexes: indexes.map((i) => ({
          IndexName: i.name,
          KeySchema: [
            { AttributeName: i.hash, KeyType: /** @type {const} */ ('HASH') },
            ...(i.range ? [{ AttributeName: i.range, KeyType: /** @type {const} */ ('RANGE') }] : []),
          ],
          Projection: { ProjectionType: /** @type {const} */ ('ALL') },
        })),
      } : {}),
    };
  });
}

/**
 * serverless.yml: `resources: ${file(./lib/tables.js):resources}` with the stage's table prefix.
 * @param {{ resolveVariable: (name: string) => Promise<string> }} serverless
 */
async function resources({ resolveVariable }) {
  const prefix = await resolveVariable('self:custom.tablePrefix');
  /** @type {Record<string, unknown>} */
  const Resources = {};
  for (const input of createTableInputs(prefix)) {
    const logical = String(input.TableName).replace(/[^A-Za-z0-9]/g, '') + 'Table';
    Resources[logical] = { Type: 'AWS::DynamoDB::Table', Properties: input };
  }
  return { Resources };
}

module.exports = { tables, createTableInputs, indexesOf, resources };
