import { GraphQLError } from 'graphql';

/** The codes of CONTRACT.md; every error a client sees carries one in `extensions.code`. */
export type ErrorCode =
  | 'BAD_USER_INPUT'
  | 'NOT_FOUND'
  | 'CONFLICT'
  | 'UNAUTHENTICATED'
  | 'FORBIDDEN'
  | 'UNSCHEDULABLE'
  | 'RATE_LIMITED'
  | 'INTERNAL';

/** The one error type of the domain. Messages are written for the person who has to fix the input. */
export class AppError extends GraphQLError {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>) {
    super(message, { extensions: { code, ...(details ?? {}) } });
    this.code = code;
    this.name = 'AppError';
  }
}

export const badInput = (message: string, field?: string) =>
  new AppError('BAD_USER_INPUT', message, field ? { field } : undefined);
export const notFound = (what: string, id: string) => new AppError('NOT_FOUND', `${what} "${id}" does not exist`);
export const conflict = (message: string) => new AppError('CONFLICT', message);
