import { AppError, badInput } from '../../lib/errors';
import { config } from '../../lib/config';

/**
 * Images in the platform registry. A release pins each image it runs to the digest the registry holds for its tag
 * when the revision is made; hosts pull and create by that digest, so every host runs the same bits and pushing
 * the tag again cannot change what a release runs.
 */

export interface PinnedImage {
  /** As the product names it, e.g. `fangzhou/redis:7.0.15`. */
  image: string;
  /** `sha256:…`, or null when the platform runs no registry (hosts then use the images their engines have). */
  imageDigest: string | null;
}

// Whatever kind of manifest was pushed: the digest must be the one the engine will pull by.
const MANIFEST_TYPES = [
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
].join(', ');

const TIMEOUT_MS = 5000;

/** `fangzhou/redis:7.0.15` → [`fangzhou/redis`, `7.0.15`]; no tag means `latest`, as for `docker pull`. */
function repositoryAndTag(image: string): [string, string] {
  const slash = image.lastIndexOf('/');
  const colon = image.lastIndexOf(':');
  return colon > slash ? [image.slice(0, colon), image.slice(colon + 1)] : [image, 'latest'];
}

/** Asks the registry for the digest `image`'s tag points at now. Throws when it is not there or the registry is out of reach. */
export async function pinImage(image: string): Promise<PinnedImage> {
  const registry = config().registry;
  if (!registry) return { image, imageDigest: null };
  const [repository, tag] = repositoryAndTag(image);
  let res: Response;
  try {
    res = await fetch(`http://${registry}/v2/${repository}/manifests/${encodeURIComponent(tag)}`, {
      method: 'HEAD', headers: { accept: MANIFEST_TYPES }, signal: AbortSignal.timeout(TIMEOUT_MS),
    });
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
    throw new AppError('INTERNAL', `cannot reach the image registry at ${registry} to look up ${image} (${cause}); is it running?`);
  }
  if (res.status === 404) {
    throw badInput(`image ${image} is not in the registry at ${registry}; push it (scripts/build-images.sh --push ${registry}) or import a bundle (fz image import)`, 'version');
  }
  const digest = res.headers.get('docker-content-digest');
  if (!res.ok || !digest) throw new AppError('INTERNAL', `the image registry at ${registry} answered ${res.status} for ${image}`);
  return { image, imageDigest: digest };
}
