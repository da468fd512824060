/**
 * Pushes the images of a `docker save` bundle to a registry over the distribution API (HTTP), without a Docker
 * engine in the way: the machine that builds or imports images need not trust the registry's address (engines
 * refuse plain HTTP anywhere but 127.0.0.0/8 unless configured), and an air-gapped site can import with no engine.
 * Layers are gzipped deterministically, so pushing the same image twice yields the same manifest digest.
 */
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import { extract } from 'tar-stream';

const gzipAsync = promisify(gzip);

const MANIFEST_V2 = 'application/vnd.docker.distribution.manifest.v2+json';
const CONFIG = 'application/vnd.docker.container.image.v1+json';
const LAYER = 'application/vnd.docker.image.rootfs.diff.tar.gzip';

export interface Pushed {
  /** Repository and tag in the registry, e.g. `fangzhou/redis:7.0.15`. */
  image: string;
  digest: string;
}

/** What `docker save` lists per image in its manifest.json. */
interface SavedImage {
  Config: string;
  RepoTags: string[] | null;
  Layers: string[];
}

/** Every file of the bundle by path (bundles of middleware images are tens of MB: memory is fine). */
async function readBundle(bundle: Readable): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  const tar = extract();
  await new Promise<void>((resolve, reject) => {
    tar.on('entry', (header, stream, next) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        if (header.type === 'file') files.set(header.name.replace(/^\.\//, ''), Buffer.concat(chunks));
        next();
      });
      stream.resume();
    });
    tar.on('finish', resolve);
    tar.on('error', reject);
    bundle.on('error', reject);
    bundle.pipe(tar);
  });
  return files;
}

const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** `10.0.0.5:5000/fangzhou/redis:7` → `fangzhou/redis:7`: a bundle's names lose the exporting site's registry. */
export function withoutRegistry(ref: string): string {
  const first = ref.split('/')[0];
  return ref.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost') ? ref.slice(first.length + 1) : ref;
}

function splitTag(image: string): [string, string] {
  const slash = image.lastIndexOf('/');
  const colon = image.lastIndexOf(':');
  return colon > slash ? [image.slice(0, colon), image.slice(colon + 1)] : [image, 'latest'];
}

class RegistryClient {
  constructor(private readonly registry: string) {}

  private async call(method: string, url: string, init: { body?: Buffer; headers?: Record<string, string> } = {}): Promise<Response> {
    const full = url.startsWith('http') ? url : `http://${this.registry}${url}`;
    try {
      return await fetch(full, { method, body: init.body, headers: init.headers, signal: AbortSignal.timeout(120_000) });
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
      throw new Error(`cannot reach the registry at ${this.registry} (${cause})`);
    }
  }

  private async expect(res: Response, status: number, what: string): Promise<Response> {
    if (res.status !== status) throw new Error(`the registry at ${this.registry} refused ${what}: ${res.status} ${(await res.text()).slice(0, 200)}`);
    return res;
  }

  /** Uploads a blob unless the repository has it already. */
  async blob(repository: string, content: Buffer): Promise<string> {
    const digest = sha256(content);
    if ((await this.call('HEAD', `/v2/${repository}/blobs/${digest}`)).status === 200) return digest;
    const started = await this.expect(await this.call('POST', `/v2/${repository}/blobs/uploads/`), 202, `an upload to ${repository}`);
    const location = started.headers.get('location')!;
    const url = `${location}${location.includes('?') ? '&' : '?'}digest=${encodeURIComponent(digest)}`;
    await this.expect(await this.call('PUT', url, { body: content, headers: { 'content-type': 'application/octet-stream' } }), 201, `blob ${digest}`);
    return digest;
  }

  /** The digest of the tag's manifest and the config digest (the image id) it names; null when the tag is not there. */
  async current(repository: string, tag: string): Promise<{ digest: string; config: string } | null> {
    const res = await this.call('GET', `/v2/${repository}/manifests/${encodeURIComponent(tag)}`, { headers: { accept: MANIFEST_V2 } });
    if (res.status !== 200) return null;
    const body = Buffer.from(await res.arrayBuffer());
    const config = (JSON.parse(body.toString('utf8')) as { config?: { digest?: string } }).config?.digest;
    return config ? { digest: res.headers.get('docker-content-digest') ?? sha256(body), config } : null;
  }

  async manifest(repository: string, tag: string, manifest: Buffer): Promise<string> {
    const res = await this.expect(await this.call('PUT', `/v2/${repository}/manifests/${encodeURIComponent(tag)}`, {
      body: manifest, headers: { 'content-type': MANIFEST_V2 },
    }), 201, `the manifest of ${repository}:${tag}`);
    return res.headers.get('docker-content-digest') ?? sha256(manifest);
  }
}

/** The registry already holds `image` as this image id (config digest): its manifest digest, else null. */
export async function alreadyPushed(registry: string, image: string, imageId: string): Promise<string | null> {
  const [repository, tag] = splitTag(withoutRegistry(image));
  const current = await new RegistryClient(registry).current(repository, tag);
  return current?.config === imageId ? current.digest : null;
}

/** Pushes every tagged image of the bundle; `only` limits it to these names (as the bundle names them). */
export async function pushBundle(bundle: Readable, registry: string, only?: string[]): Promise<Pushed[]> {
  const files = await readBundle(bundle);
  const index = files.get('manifest.json');
  if (!index) throw new Error('not a docker save bundle (no manifest.json)');
  const client = new RegistryClient(registry);
  const pushed: Pushed[] = [];
  for (const saved of JSON.parse(index.toString('utf8')) as SavedImage[]) {
    const tags = (saved.RepoTags ?? []).filter((t) => !only || only.includes(t));
    if (!tags.length) continue;
    const file = (path: string) => {
      const content = files.get(path);
      if (!content) throw new Error(`the bundle lacks ${path}, which its manifest.json names`);
      return content;
    };
    // Level 1: layers cross a LAN once; compressing them hard costs more time than it saves.
    const gzipped = await Promise.all(saved.Layers.map((l) => gzipAsync(file(l), { level: 1 })));
    for (const ref of tags) {
      const image = withoutRegistry(ref);
      const [repository, tag] = splitTag(image);
      const config = file(saved.Config);
      const layers = [];
      for (const layer of gzipped) layers.push({ mediaType: LAYER, size: layer.length, digest: await client.blob(repository, layer) });
      const manifest = Buffer.from(JSON.stringify({
        schemaVersion: 2,
        mediaType: MANIFEST_V2,
        config: { mediaType: CONFIG, size: config.length, digest: await client.blob(repository, config) },
        layers,
      }));
      pushed.push({ image, digest: await client.manifest(repository, tag, manifest) });
    }
  }
  return pushed;
}
