/**
 * Images on the runner's engine: before a container is created its image must be there, pulled from the platform
 * registry by the digest the release pinned (so every host runs the same bits, whatever the tag says now). Pulls run
 * in the background, one per image however many instances wait for it; the runner keeps syncing meanwhile and
 * reports the waiting instances as PULLING with the pull's progress. A failed pull is retried with back-off and its
 * error, worded for the operator, stays on the instance until a pull succeeds.
 */
import type Docker from 'dockerode';
import { log } from '../lib/log';
import type { DesiredContainer, PullProgress } from '../lib/runner-protocol';
import type { PullingInstance } from './plan';

/** Why an instance's image cannot be had; the message is what the operator sees on the instance. */
export class ImageProblem extends Error {}

/** `fangzhou/redis:7.0.15` → repository `fangzhou/redis`, tag `7.0.15` (a port in a host part is not a tag). */
export function splitImage(image: string): { repository: string; tag: string } {
  const withoutDigest = image.split('@')[0];
  const slash = withoutDigest.lastIndexOf('/');
  const colon = withoutDigest.lastIndexOf(':');
  return colon > slash
    ? { repository: withoutDigest.slice(0, colon), tag: withoutDigest.slice(colon + 1) }
    : { repository: withoutDigest, tag: 'latest' };
}

/** What the engine creates the container from: the pinned digest in the registry, else the tag there, else local. */
export function imageRef(d: Pick<DesiredContainer, 'image' | 'imageDigest' | 'registry'>): string {
  if (!d.registry) return d.image;
  const { repository, tag } = splitImage(d.image);
  return d.imageDigest ? `${d.registry}/${repository}@${d.imageDigest}` : `${d.registry}/${repository}:${tag}`;
}

/** The image as the operator knows it, with the pinned digest when there is one. */
export const describeImage = (d: Pick<DesiredContainer, 'image' | 'imageDigest'>) =>
  d.imageDigest ? `${d.image} (${d.imageDigest.slice(0, 19)}…)` : d.image;

/** One line of the engine's pull stream (`POST /images/create`). */
export interface PullEvent {
  status?: string;
  id?: string;
  progressDetail?: { current?: number; total?: number };
  error?: string;
  errorDetail?: { message?: string };
}

interface LayerProgress {
  done: boolean;
  current: number;
  total: number;
}

/** Progress of a pull from the events seen so far: layers announced and finished, bytes downloaded of those known. */
export function pullProgress(image: string, layers: Map<string, LayerProgress>): PullProgress {
  let layersDone = 0;
  let bytesDone = 0;
  let bytesTotal = 0;
  for (const l of layers.values()) {
    if (l.done) layersDone++;
    bytesDone += l.current;
    bytesTotal += l.total;
  }
  return { image, layers: layers.size, layersDone, bytesDone, bytesTotal };
}

/** Folds one pull event into the per-layer progress (layer events carry the layer id; the rest are ignored). */
export function trackLayer(layers: Map<string, LayerProgress>, e: PullEvent): void {
  const status = e.status ?? '';
  if (!e.id || !/^(Pulling fs layer|Waiting|Downloading|Verifying Checksum|Download complete|Extracting|Pull complete|Already exists)$/.test(status)) return;
  const layer = layers.get(e.id) ?? { done: false, current: 0, total: 0 };
  if (status === 'Downloading') {
    layer.total = e.progressDetail?.total ?? layer.total;
    layer.current = e.progressDetail?.current ?? layer.current;
  }
  if (status === 'Download complete' || status === 'Extracting') layer.current = layer.total;
  if (status === 'Pull complete' || status === 'Already exists') {
    layer.done = true;
    layer.current = layer.total;
  }
  layers.set(e.id, layer);
}

/** The engine's words for a failed pull, turned into what the operator can act on. */
export function pullFailure(d: Pick<DesiredContainer, 'image' | 'imageDigest' | 'registry'>, engineMessage: string): string {
  const image = describeImage(d);
  const at = d.registry!;
  if (/manifest unknown|not found|does not exist|unknown blob|blob unknown|name unknown/i.test(engineMessage)) {
    return `image ${image} is not in the registry at ${at}; push it (scripts/build-images.sh --push ${at}) or import a bundle (fz image import)`;
  }
  if (/server gave HTTP response to HTTPS client/i.test(engineMessage)) {
    return `this host's Docker engine does not trust the registry at ${at} (plain HTTP): add "insecure-registries": ["${at}"] ` +
      `to /etc/docker/daemon.json (or --insecure-registry ${at}), or install the platform CA under /etc/docker/certs.d/${at}/`;
  }
  if (/connection refused|no route to host|i\/o timeout|network is unreachable|no such host|dial tcp|EOF/i.test(engineMessage)) {
    return `cannot reach the registry at ${at} to pull ${image}: ${engineMessage.trim()}`;
  }
  return `could not pull ${image} from the registry at ${at}: ${engineMessage.trim()}`;
}

const FIRST_RETRY_MS = 2000;
const MAX_RETRY_MS = 30_000;
/** Progress wakes the runner at most this often (it reports each wake-up); the end of a pull wakes it at once. */
const PROGRESS_WAKE_MS = 1000;

interface Pull {
  /** Set while a pull runs. */
  layers: Map<string, LayerProgress> | null;
  /** The last failure, kept on the waiting instances until a pull succeeds. */
  error: string | null;
  retryAt: number;
  retryMs: number;
}

interface Waiting {
  instanceId: string;
  name: string;
  specHash: string;
  ref: string;
  image: string;
}

export class ImagePuller {
  private readonly pulls = new Map<string, Pull>();
  private readonly waiting = new Map<string, Waiting>();
  private lastWake = 0;

  /** `onChange` is called when a pull progresses or ends: the runner then syncs (and converges) again. */
  constructor(private readonly docker: Docker, private readonly onChange: () => void) {}

  /**
   * True when the desired container's image is on the engine. Otherwise starts a pull unless one runs (or the last
   * one failed and its retry is not due) and returns false; throws ImageProblem with the last pull's failure.
   */
  async ready(d: DesiredContainer): Promise<boolean> {
    const ref = imageRef(d);
    if (await this.present(ref)) {
      this.waiting.delete(d.instanceId);
      this.pulls.delete(ref);
      return true;
    }
    if (!d.registry) throw new ImageProblem(`image ${d.image} is not present on this host`);
    this.waiting.set(d.instanceId, { instanceId: d.instanceId, name: d.name, specHash: d.specHash, ref, image: describeImage(d) });
    const pull = this.pulls.get(ref);
    if (!pull || (!pull.layers && Date.now() >= pull.retryAt)) this.start(d, ref, pull);
    const error = this.pulls.get(ref)?.error;
    if (error) throw new ImageProblem(error);
    return false;
  }

  /** Only these instances still wait (the others were removed or got another spec). */
  retain(instanceIds: Set<string>): void {
    for (const id of this.waiting.keys()) if (!instanceIds.has(id)) this.waiting.delete(id);
  }

  /** Instances waiting for a pull that is running now, with its progress. */
  pulling(): PullingInstance[] {
    return [...this.waiting.values()].flatMap(({ instanceId, name, specHash, ref, image }) => {
      const layers = this.pulls.get(ref)?.layers;
      return layers ? [{ instanceId, name, specHash, progress: pullProgress(image, layers) }] : [];
    });
  }

  private async present(ref: string): Promise<boolean> {
    try {
      await this.docker.getImage(ref).inspect();
      return true;
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode === 404) return false;
      throw err;
    }
  }

  private start(d: DesiredContainer, ref: string, previous: Pull | undefined): void {
    const pull: Pull = { layers: new Map(), error: previous?.error ?? null, retryAt: 0, retryMs: previous?.retryMs ?? FIRST_RETRY_MS };
    this.pulls.set(ref, pull);
    const { repository, tag } = splitImage(ref);
    const began = Date.now();
    log.info({ image: d.image, ref }, 'pulling image');
    const ended = (error: string | null) => {
      pull.layers = null;
      if (error) {
        pull.error = error;
        pull.retryAt = Date.now() + pull.retryMs;
        pull.retryMs = Math.min(pull.retryMs * 2, MAX_RETRY_MS);
        log.warn({ image: d.image, ref, err: error }, 'pull failed');
      } else {
        this.pulls.delete(ref);
        log.info({ image: d.image, ref, ms: Date.now() - began }, 'pulled image');
      }
      this.onChange();
    };
    // A digest is passed as the tag parameter: the engine then pulls exactly that manifest, never "all tags".
    const digest = ref.includes('@') ? ref.split('@')[1] : null;
    this.docker.createImage({ fromImage: digest ? ref.split('@')[0] : repository, tag: digest ?? tag })
      .then((stream) => new Promise<string | null>((resolve) => {
        // A pull that fails once the stream has begun says so in an `error` line, not in the HTTP status.
        let streamError: string | null = null;
        this.docker.modem.followProgress(stream, (err: Error | null) => resolve(err ? err.message : streamError), (e: PullEvent) => {
          if (e.error) streamError = e.errorDetail?.message ?? e.error;
          trackLayer(pull.layers ?? new Map(), e);
          if (Date.now() - this.lastWake >= PROGRESS_WAKE_MS) {
            this.lastWake = Date.now();
            this.onChange();
          }
        });
      }))
      // dockerode prefixes the engine's message with "(HTTP code 500) server error - ".
      .catch((err: { message?: string; json?: { message?: string } }) =>
        err.json?.message ?? (err.message ?? String(err)).replace(/^\(HTTP code \d+\)[^-]*- /, ''))
      .then((message) => ended(message ? pullFailure(d, message) : null));
  }
}
