/**
 * Upgrades a release from a script and draws its progress live:
 *
 *   FZ_TOKEN=$(cat .fangzhou/admin-token) node --import tsx examples/upgrade.ts <release name> <version> [maxUnavailable]
 *
 * Starts `upgradeRelease`, follows `releaseProgress` over WebSocket (graphql-ws), prints a progress bar, and exits
 * 0 when the upgrade succeeded, 1 when it rolled back or stopped, 2 on a refused request.
 */
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const api = process.env.FZ_API_URL ?? 'http://localhost:3000/graphql';
const wsUrl = process.env.FZ_WS_URL ?? 'ws://localhost:3001';
const token = process.env.FZ_TOKEN ?? '';
const [name, version, maxUnavailable = '1'] = process.argv.slice(2);

async function gql<T>(query: string, variables: Record<string, unknown>): Promise<T> {
  const res = await fetch(api, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ query, variables }),
  });
  const body = await res.json() as { data?: T; errors?: { message: string; extensions?: { code?: string } }[] };
  if (body.errors?.length) {
    process.stderr.write(`refused (${body.errors[0].extensions?.code}): ${body.errors[0].message}\n`);
    process.exit(2);
  }
  return body.data!;
}

const bar = (done: number, total: number) => {
  const width = 30;
  const filled = total ? Math.round((done / total) * width) : 0;
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total}`;
};

async function main() {
  if (!name || !version) {
    process.stderr.write('usage: node --import tsx examples/upgrade.ts <release name> <version> [maxUnavailable]\n');
    process.exit(2);
  }
  const { releases } = await gql<{ releases: { id: string; name: string }[] }>('{ releases { id name } }', {});
  const release = releases.find((r) => r.name === name);
  if (!release) {
    process.stderr.write(`no release named ${name}\n`);
    process.exit(2);
  }
  const client = createClient({ url: wsUrl, webSocketImpl: WebSocket, connectionParams: { authorization: `Bearer ${token}` } });
  const outcome = new Promise<number>((resolve, reject) => {
    client.subscribe<{ releaseProgress: { kind: string; message: string; progress: { done: number; total: number } | null } }>(
      { query: 'subscription($id: ID!) { releaseProgress(releaseId: $id) { kind message progress { done total } } }', variables: { id: release.id } },
      {
        next: ({ data }) => {
          const step = data!.releaseProgress;
          const progress = step.progress ? bar(step.progress.done, step.progress.total) : '';
          process.stdout.write(`${progress.padEnd(40)} ${step.kind}: ${step.message}\n`);
          if (step.kind === 'UPGRADE_DONE') resolve(0);
          if (step.kind === 'UPGRADE_ROLLED_BACK' || step.kind === 'UPGRADE_FAILED') resolve(1);
        },
        error: reject,
        complete: () => undefined,
      },
    );
  });
  // Subscribe first, so no step is missed, then start the upgrade.
  await new Promise((r) => setTimeout(r, 500));
  await gql('mutation($id: ID!, $v: String!, $m: Int) { upgradeRelease(id: $id, version: $v, strategy: {maxUnavailable: $m}) { id } }',
    { id: release.id, v: version, m: Number(maxUnavailable) });
  const code = await outcome;
  await client.dispose();
  process.stdout.write(code === 0 ? `${name} is on ${version}\n` : `${name} was not upgraded to ${version}\n`);
  process.exit(code);
}

main().catch((err) => {
  process.stderr.write(`upgrade script failed: ${err instanceof Error ? err.message : JSON.stringify(err)}\n`);
  process.exit(1);
});
