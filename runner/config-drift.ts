/**
 * Whether the config files in a running container are still the ones the runner put there: the release's rendered
 * config (`configFiles` of the desired container, copied in before the first start). Every `everyMs` per container,
 * in the background, each file is read back from the container (the engine's archive API) and compared byte for
 * byte; the paths that differ or are missing go up with the next sync as `configDrift`, for the daily inspection.
 * Only paths travel: never a file's content, which may hold secrets.
 */
import type Docker from 'dockerode';
import type { Readable } from 'node:stream';
import { extract } from 'tar-stream';
import { log } from '../lib/log';
import type { DesiredContainer, ObservedContainer } from '../lib/runner-protocol';

interface Check {
  specHash: string;
  at: number;
  drift: string[] | null;
}

export class ConfigDriftChecker {
  private readonly checks = new Map<string, Check>();
  private running = false;

  constructor(private readonly docker: Docker, private readonly everyMs = Number(process.env.FZ_CONFIG_CHECK_SECONDS || 60) * 1000) {}

  /** The observations with what the last check of each container found (null: none differ, or not checked yet). */
  attach(observed: ObservedContainer[]): ObservedContainer[] {
    return observed.map((o) => {
      const check = this.checks.get(o.containerId);
      return { ...o, configDrift: check && check.specHash === o.specHash && check.drift?.length ? check.drift : null };
    });
  }

  /** Starts a round of checks in the background for the running containers of the desired spec that are due. */
  refresh(observed: ObservedContainer[], desired: DesiredContainer[]): void {
    const live = new Set(observed.map((o) => o.containerId));
    for (const id of this.checks.keys()) if (!live.has(id)) this.checks.delete(id);
    if (this.running) return;
    const byInstance = new Map(desired.map((d) => [d.instanceId, d]));
    const due = observed.flatMap((o) => {
      const d = byInstance.get(o.instanceId);
      const last = this.checks.get(o.containerId);
      if (o.state !== 'RUNNING' || !d?.configFiles.length || d.specHash !== o.specHash) return [];
      return !last || last.specHash !== o.specHash || Date.now() - last.at >= this.everyMs ? [{ o, d }] : [];
    });
    if (!due.length) return;
    this.running = true;
    void (async () => {
      for (const { o, d } of due) {
        try {
          const drift = await this.compare(o.containerId, d);
          this.checks.set(o.containerId, { specHash: o.specHash, at: Date.now(), drift });
        } catch (err) {
          log.warn({ instanceId: o.instanceId, err: (err as Error).message }, 'could not read the config files back from the container');
          this.checks.set(o.containerId, { specHash: o.specHash, at: Date.now(), drift: this.checks.get(o.containerId)?.drift ?? null });
        }
      }
    })().finally(() => { this.running = false; });
  }

  private async compare(containerId: string, d: DesiredContainer): Promise<string[]> {
    const drift: string[] = [];
    for (const file of d.configFiles) {
      const actual = await readFile(this.docker.getContainer(containerId), file.path);
      if (actual === null) drift.push(`${file.path} (missing)`);
      else if (!actual.equals(Buffer.from(file.content))) drift.push(file.path);
    }
    return drift;
  }
}

/** One file of a container, through the engine's archive API; null when it does not exist. */
async function readFile(container: Docker.Container, path: string): Promise<Buffer | null> {
  let archive: Readable;
  try {
    archive = await container.getArchive({ path }) as unknown as Readable;
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode === 404) return null;
    throw err;
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let found = false;
    const tar = extract();
    tar.on('entry', (headers, stream, next) => {
      if (!found && headers.type !== 'directory') {
        found = true;
        stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      } else {
        stream.resume();
      }
      stream.on('end', next);
    });
    tar.on('finish', () => resolve(found ? Buffer.concat(chunks) : null));
    tar.on('error', reject);
    archive.on('error', reject);
    archive.pipe(tar);
  });
}
