import { log } from './log';

/**
 * Starts another function of this service now, without waiting for it (an async "Event" invoke): a mutation that
 * wrote desired state or an event kicks the function that acts on it; the periodic tick repairs a lost kick.
 *
 * - serverless-offline (`IS_OFFLINE`): `POST http://localhost:${FZ_LAMBDA_PORT}/2015-03-31/functions/<name>/invocations`
 *   with `X-Amz-Invocation-Type: Event`. Without FZ_LAMBDA_PORT in the function's environment it does nothing
 *   (and says so once): a guessed port could reach another stack.
 * - AWS Lambda: `@aws-sdk/client-lambda` Invoke with InvocationType Event (needs `lambda:InvokeFunction`).
 * - Server mode (server/): the process that hosts the handlers registers itself with `invokeInProcess`, and the
 *   function runs in that process.
 * - Anywhere else (tests, scripts in one process): nothing to kick.
 *
 * `functionName` is the function's key in serverless.yml (`publish`, `reconcile`); the deployed name is
 * `<service>-<stage>-<key>`, from FZ_FUNCTION_PREFIX or else from this function's own name. Never throws.
 */
export async function kick(functionName: string, payload: unknown = {}): Promise<void> {
  try {
    if (inProcess) return inProcess(functionName, payload);
    const name = `${functionPrefix()}${functionName}`;
    if (process.env.IS_OFFLINE) {
      const port = process.env.FZ_LAMBDA_PORT;
      if (!port) {
        if (!warned) log.warn({ functionName }, 'kick: FZ_LAMBDA_PORT is not in this function\'s environment; relying on the tick');
        warned = true;
        return;
      }
      const res = await fetch(`http://${process.env.FZ_LISTEN_HOST || 'localhost'}:${port}/2015-03-31/functions/${encodeURIComponent(name)}/invocations`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-amz-invocation-type': 'Event' },
        body: JSON.stringify(payload),
        signal: AbortSignal.timeout(5000),
      });
      await res.arrayBuffer();
      if (res.status >= 300) log.warn({ functionName: name, status: res.status }, 'kick: the invoke was refused');
      return;
    }
    if (!process.env.AWS_LAMBDA_FUNCTION_NAME) return;
    // Loaded only here, so functions that never kick do not pay for the client at cold start.
    const { LambdaClient, InvokeCommand } = await import('@aws-sdk/client-lambda');
    lambda ??= new LambdaClient({});
    await lambda.send(new InvokeCommand({ FunctionName: name, InvocationType: 'Event', Payload: Buffer.from(JSON.stringify(payload)) }));
  } catch (err) {
    log.warn({ err, functionName }, 'kick failed; the tick will run it');
  }
}

let warned = false;
let lambda: import('@aws-sdk/client-lambda').LambdaClient | undefined;
let inProcess: ((functionName: string, payload: unknown) => void) | undefined;

/** Server mode: kicks start the function in this process (`start` must not wait for it). */
export function invokeInProcess(start: ((functionName: string, payload: unknown) => void) | undefined) {
  inProcess = start;
}

/** `<service>-<stage>-`: FZ_FUNCTION_PREFIX, or this function's own name without its key (keys have no dashes). */
export function functionPrefix(): string {
  if (process.env.FZ_FUNCTION_PREFIX) return process.env.FZ_FUNCTION_PREFIX;
  const own = process.env.AWS_LAMBDA_FUNCTION_NAME;
  if (own && own.includes('-')) return own.slice(0, own.lastIndexOf('-') + 1);
  return 'fangzhou-dev-';
}
