/**
 * `fz image push`, `fz image export` / `fz image import`: images into the platform registry, and carried into an
 * air-gapped site as a `docker save` bundle. Export takes the images from the platform registry (or from the local
 * engine); import pushes every image of a bundle to the site's platform registry, where its hosts pull from.
 */
import Docker from 'dockerode';
import { createReadStream, createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { CliError } from './api';
import { alreadyPushed, pushBundle, type Pushed } from './registry-push';

export function localEngine(env: NodeJS.ProcessEnv = process.env): Docker {
  const host = env.DOCKER_HOST ?? 'unix:///var/run/docker.sock';
  const tcp = /^(?:tcp|http):\/\/([^:/]+):(\d+)\/?$/.exec(host);
  return tcp ? new Docker({ host: tcp[1], port: Number(tcp[2]), protocol: 'http' }) : new Docker({ socketPath: host.replace(/^unix:\/\//, '') });
}


function splitTag(image: string): { repo: string; tag: string } {
  const slash = image.lastIndexOf('/');
  const colon = image.lastIndexOf(':');
  return colon > slash ? { repo: image.slice(0, colon), tag: image.slice(colon + 1) } : { repo: image, tag: 'latest' };
}

/** One `docker save` of several images (GET /images/get?names=…); dockerode has getImages, its types lack it. */
const save = (docker: Docker, refs: string[]) =>
  (docker as unknown as { getImages(opts: { names: string[] }): Promise<Readable> }).getImages({ names: refs });

/** Follows a pull stream to its end; an `error` line fails it. Returns every line. */
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
    await pipeline(await save(docker, refs), createWriteStream(file));
  } catch (err) {
    throw new CliError(`cannot write ${file}: ${engineMessage(err)}`);
  } finally {
    for (const ref of pulled) await docker.getImage(ref).remove({ noprune: true }).catch(() => undefined);
  }
  out(`exported ${refs.length} image(s) to ${file}: ${images.join(', ')}`);
}

/** Pushes images of the local engine to the registry (saved through the engine, uploaded over HTTP). */
export async function pushImages(docker: Docker, images: string[], registry: string, out: (l: string) => void): Promise<void> {
  const missing: string[] = [];
  try {
    for (const image of images) {
      const { Id } = await docker.getImage(image).inspect().catch((err) => {
        throw new CliError(`cannot push ${image}: not on the local engine: ${engineMessage(err)}`);
      });
      // The same image under the same tag is there already: no save, no upload.
      const digest = await alreadyPushed(registry, image, Id);
      if (digest) out(`${image} is in the registry at ${registry} already (${digest})`);
      else missing.push(image);
    }
    if (!missing.length) return;
    for (const p of await pushBundle(await save(docker, missing), registry, missing)) out(`pushed ${p.image} to the registry at ${registry} (${p.digest})`);
  } catch (err) {
    if (err instanceof CliError) throw err;
    throw new CliError(`cannot push to the registry at ${registry}: ${engineMessage(err)}`);
  }
}

/** Pushes every image of a bundle to `registry` under its name without the exporting site's address; no engine needed. */
export async function importImages(file: string, registry: string, out: (l: string) => void): Promise<void> {
  let pushed: Pushed[];
  try {
    pushed = await pushBundle(createReadStream(file), registry);
  } catch (err) {
    throw new CliError(`cannot import ${file}: ${(err as Error).message}`);
  }
  if (!pushed.length) throw new CliError(`${file} holds no tagged image (bundles come from fz image export or docker save NAME:TAG)`);
  for (const p of pushed) out(`imported ${p.image} into the registry at ${registry} (${p.digest})`);
}
