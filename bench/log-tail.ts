/**
 * The live log tail (instanceLogTail): how long a line a container prints takes to reach a graphql-ws subscriber.
 * One demo instance on the local engine; once the follow runs, 40 lines are printed one at a time with
 * `docker exec … echo > /proc/1/fd/1`, each after the previous one arrived, and the time from the engine's own
 * timestamp of the line (`at`: when the engine took it from the container; same machine, same clock) to its arrival
 * at the subscriber is taken — not from the exec call, which alone costs hundreds of ms on a busy machine. The runner
 * sends what it gathered every 0.5 s, so about 250 ms of it is that wait on average.
 * `node --import tsx bench/log-tail.ts`
 */
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { benchStack, DEPLOY, defineDemo, docker, post, printStats, roundStats, runBench, stats, waitUntil } from './lib';

const LINES = 40;

runBench('log-tail', 170_000, async (b) => {
  const { stack, startRunner } = await benchStack(b, 3490, 4990);
  await defineDemo(stack);
  await startRunner(`bench-tail-${process.pid}`);
  const { deploy } = await post<{ deploy: { id: string } }>(stack.url, DEPLOY, { input: { name: 'benchtail', product: 'demo', version: '1.0.0', replicas: 1 } }, stack.adminToken);
  b.defer(() => post(stack.url, 'mutation($id: ID!) { deleteRelease(id: $id) { id } }', { id: deploy.id }, stack.adminToken).catch(() => undefined));
  await waitUntil('RUNNING', async () => (await post<{ release: { status: string } }>(stack.url, 'query($id: ID!) { release(id: $id) { status } }', { id: deploy.id }, stack.adminToken)).release.status === 'RUNNING', 90_000, 200);
  const { release } = await post<{ release: { instances: { id: string }[] } }>(stack.url, 'query($id: ID!) { release(id: $id) { instances { id } } }', { id: deploy.id }, stack.adminToken);
  const instanceId = release.instances[0].id;
  const [container] = await docker.listContainers({ filters: { label: [`fangzhou.instance=${instanceId}`] } });
  const print = async (text: string) => {
    const exec = await docker.getContainer(container.Id).exec({ Cmd: ['sh', '-c', `echo ${text} > /proc/1/fd/1`], AttachStdout: true });
    const stream = await exec.start({});
    await new Promise((resolve) => { stream.on('end', resolve); stream.on('close', resolve); stream.resume(); });
  };

  const arrived = new Map<string, number>();
  const engineAt = new Map<string, number>();
  const client = createClient({ url: stack.wsUrl, webSocketImpl: WebSocket, connectionParams: { authorization: `Bearer ${stack.adminToken}` }, retryAttempts: 0 });
  b.defer(() => client.dispose());
  client.subscribe<{ instanceLogTail: { lines: { at: string; text: string }[] } }>(
    { query: 'subscription($id: ID!) { instanceLogTail(instanceId: $id) { lines { at text } } }', variables: { id: instanceId } },
    {
      next: (r) => {
        for (const l of r.data?.instanceLogTail.lines ?? []) {
          arrived.set(l.text, Date.now());
          engineAt.set(l.text, Date.parse(l.at));
        }
      },
      error: (e) => console.error(e),
      complete: () => undefined,
    },
  );
  let n = 0;
  await waitUntil('the follow to run', async () => {
    await print(`warmup-${++n}`);
    return [...arrived.keys()].some((k) => k.startsWith('warmup-'));
  }, 30_000, 500);

  const latencies: number[] = [];
  for (let i = 0; i < LINES; i++) {
    const text = `bench-line-${i}`;
    await print(text);
    await waitUntil(text, async () => arrived.has(text), 10_000, 5);
    latencies.push(arrived.get(text)! - engineAt.get(text)!);
  }
  const s = stats(latencies);
  printStats(`engine → subscriber (${LINES} lines)`, s);
  return { lines: LINES, latencyMs: roundStats(s) };
});
