// @ts-check
/**
 * The store's tables, declared once: lib/store.ts creates them locally (dynalite, DynamoDB Local) and serverless.yml
 * declares the same ones as CloudFormation resources. Plain CommonJS because serverless.yml loads it directly.
 */
const tables = require('./tables.json');

/** @param {string} prefix @returns {import('@aws-sdk/client-dynamodb').CreateTableCommandInput[]} */
function createTableInputs(prefix) {
  return Object.entries(tables).map(([name, def]) => {
    /** @type {Record<string, string>} */
    const indexes = 'indexes' in def ? def.indexes : {};
    const attributes = new Set([def.key, ...Object.values(indexes)]);
    return {
      TableName: `${prefix}${name}`,
      BillingMode: 'PAY_PER_REQUEST',
      KeySchema: [{ AttributeName: def.key, KeyType: 'HASH' }],
      AttributeDefinitions: [...attributes].map((a) => ({ AttributeName: a, AttributeType: 'S' })),
      ...(Object.keys(indexes).length ? {
        GlobalSecondaryIndexes: Object.entries(indexes).map(([indexName, attribute]) => ({
          IndexName: indexName,
          KeySchema: [{ AttributeName: attribute, KeyType: 'HASH' }],
          Projection: { ProjectionType: 'ALL' },
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

module.exports = { tables, createTableInputs, resources };
