/**
 * `fz image export` / `fz image import`: carry images into an air-gapped site as a `docker save` bundle. Export
 * takes the images from the platform registry (or, without one, from the local engine); import loads a bundle into
 * the local engine and pushes every image in it to the site's platform registry, where its hosts pull from.
 */
import Docker from 'dockerode';
import { createReadStream, createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { CliError } from './api';

export function localEngine(env: NodeJS.ProcessEnv = process.env): Docker {
  const host = env.DOCKER_HOST ?? 'unix:///var/run/docker.sock';
  const tcp = /^(?:tcp|http):\/\/([^:/]+):(\d+)\/?$/.exec(host);
  return tcp ? new Docker({ host: tcp[1], port: Number(tcp[2]), protocol: 'http' }) : new Docker({ socketPath: host.replace(/^unix:\/\//, '') });
}

/** The registry part of a reference (`10.0.0.5:5000/fangzhou/redis:7` → `10.0.0.5:5000`), as Docker tells them apart. */
function registryOf(ref: string): string | null {
  const first = ref.split('/')[0];
  return ref.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost') ? first : null;
}

const withoutRegistry = (ref: string) => (registryOf(ref) ? ref.slice(ref.indexOf('/') + 1) : ref);

function splitTag(image: string): { repo: string; tag: string } {
  const slash = image.lastIndexOf('/');
  const colon = image.lastIndexOf(':');
  return colon > slash ? { repo: image.slice(0, colon), tag: image.slice(colon + 1) } : { repo: image, tag: 'latest' };
}

/** Follows a pull/push/load stream to its end; an `error` line fails it. Returns every line. */
async function follow(docker: Docker, stream: NodeJS.ReadableStream): Promise<Record<string, any>[]> {
  return new Promise((resolve, reject) => {
    docker.modem.followProgress(stream, (err: Error | null, output: Record<string, any>[]) => {
      const failed = output?.find((o) => o.error);
      if (err || failed) reject(new Error(err?.message ?? failed!.errorDetail?.message ?? failed!.error));
      else resolve(output);
    });
  });
}

const engineMessage = (err: unknown) => {
  const e = err as { json?: { message?: string }; message?: string; code?: string };
  if (e.code === 'ECONNREFUSED' || e.code === 'ENOENT') return `no Docker engine answers (${e.code}); set DOCKER_HOST`;
  return e.json?.message ?? (e.message ?? String(err)).replace(/^\(HTTP code \d+\)[^-]*- /, '');
};

/**
 * Writes one bundle with the images. From a registry they are pulled first (so the bundle holds what the registry
 * holds, not whatever the local engine has under that name); the bundle names them with the registry's address,
 * which import replaces with the site's.
 */
export async function exportImages(docker: Docker, images: string[], file: string, registry: string | null, out: (l: string) => void): Promise<void> {
  const refs: string[] = [];
  const pulled: string[] = [];
  for (const image of images) {
    const ref = registry ? `${registry}/${image}` : image;
    try {
      if (registry) {
        const { repo, tag } = splitTag(ref);
        if (!(await docker.getImage(ref).inspect().then(() => true, () => false))) pulled.push(ref);
        await follow(docker, await docker.createImage({ fromImage: repo, tag }));
      } else {
        await docker.getImage(ref).inspect();
      }
    } catch (err) {
      throw new CliError(`cannot export ${image}: ${registry ? `pulling it from the registry at ${registry} failed: ` : 'not on the local engine: '}${engineMessage(err)}`);
    }
    refs.push(ref);
  }
  try {
    // dockerode has getImages (GET /images/get?names=…, one `docker save` of several images); its types lack it.
    const engine = docker as unknown as { getImages(opts: { names: string[] }): Promise<Readable> };
    const bundle = await engine.getImages({ names: refs });
    await pipeline(bundle, createWriteStream(file));
  } catch (err) {
    throw new CliError(`cannot write ${file}: ${engineMessage(err)}`);
  } finally {
    for (const ref of pulled) await docker.getImage(ref).remove({ noprune: true }).catch(() => undefined);
  }
  out(`exported ${refs.length} image(s) to ${file}: ${images.join(', ')}`);
}

/** Loads the bundle and pushes each image in it to `registry` under its name without the exporting site's address. */
export async function importImages(docker: Docker, file: string, registry: string, out: (l: string) => void): Promise<void> {
  let loaded: string[];
  try {
    const lines = await follow(docker, await docker.loadImage(createReadStream(file), { quiet: true }));
    loaded = lines.flatMap((l) => /^Loaded image: (\S+)/.exec(String(l.stream ?? '').trim())?.[1] ?? []);
  } catch (err) {
    throw new CliError(`cannot load ${file}: ${engineMessage(err)}`);
  }
  if (!loaded.length) throw new CliError(`${file} holds no tagged image (bundles come from fz image export or docker save NAME:TAG)`);
  for (const ref of loaded) {
    const image = withoutRegistry(ref);
    const target = `${registry}/${image}`;
    const { repo, tag } = splitTag(target);
    try {
      await docker.getImage(ref).tag({ repo, tag });
      // The engine wants an X-Registry-Auth header even for a registry without auth: an empty one.
      const pushed = await follow(docker, await docker.getImage(target).push({ authconfig: { serveraddress: registry } }));
      const digest = pushed.find((l) => l.aux?.Digest)?.aux.Digest ?? 'digest unknown';
      out(`imported ${image} into the registry at ${registry} (${digest})`);
    } catch (err) {
      throw new CliError(`cannot push ${image} to the registry at ${registry}: ${engineMessage(err)}`);
    } finally {
      // Tags with a registry's address were only handles for the push.
      for (const handle of new Set([target, ...(registryOf(ref) ? [ref] : [])])) {
        await docker.getImage(handle).remove({ noprune: true }).catch(() => undefined);
      }
    }
  }
}
