import { LocalGraphQLDataSource, RemoteGraphQLDataSource, type GraphQLDataSourceProcessOptions } from '@apollo/gateway';
import { execute, parse, validate, type DocumentNode, type GraphQLError } from 'graphql';
import type { Context } from '../lib/auth';
import { keepAliveFetch } from './fetcher';

/**
 * Calls a subgraph over HTTP (on kept-alive connections) and forwards the caller's credential, so each subgraph
 * checks it again (subgraphs are reachable on their own too), and the request's id, so the subgraph's logs and audit
 * entries carry the id the caller sent or the gateway gave.
 */
export class ForwardingDataSource extends RemoteGraphQLDataSource<Context> {
  constructor(url: string) {
    super({ url, fetcher: keepAliveFetch });
  }

  override willSendRequest({ request, context }: Parameters<NonNullable<RemoteGraphQLDataSource<Context>['willSendRequest']>>[0]) {
    if (context.authorization) request.http?.headers.set('authorization', context.authorization);
    if (context.requestId) request.http?.headers.set('x-request-id', context.requestId);
  }
}

/** Query plans send a subgraph the same few documents: far more than this many means plans are not being reused. */
const MAX_DOCUMENTS = 1_000;

/**
 * Runs a subgraph in this process. Apollo's LocalGraphQLDataSource parses and validates every fetch's document again
 * (about 1 ms each here; a release with its instances' status is three fetches, and the publisher runs every event's
 * lookups through the gateway too); this one does it once per document.
 */
export class LocalDataSource extends LocalGraphQLDataSource<Context> {
  private readonly documents = new Map<string, DocumentNode>();

  override async process({ request, context }: GraphQLDataSourceProcessOptions<Context>): ReturnType<LocalGraphQLDataSource<Context>['process']> {
    const query = request.query ?? '';
    let document = this.documents.get(query);
    if (!document) {
      try {
        document = parse(query);
      } catch (err) {
        return { errors: [err as GraphQLError] };
      }
      const errors = validate(this.schema, document);
      if (errors.length) return { errors };
      if (this.documents.size >= MAX_DOCUMENTS) this.documents.delete(this.documents.keys().next().value!);
      this.documents.set(query, document);
    }
    return execute({ schema: this.schema, document, variableValues: request.variables, operationName: request.operationName, contextValue: context });
  }
}
