import { imageRef, pullFailure, pullProgress, splitImage, trackLayer, type PullEvent } from '../../runner/images';

const pinned = { image: 'fangzhou/redis:7.0.15', imageDigest: `sha256:${'ab'.repeat(32)}`, registry: '10.77.0.1:5000' };

test('a pinned image is pulled and run by digest from the platform registry; without a registry, the local tag', () => {
  expect(imageRef(pinned)).toBe(`10.77.0.1:5000/fangzhou/redis@sha256:${'ab'.repeat(32)}`);
  expect(imageRef({ ...pinned, registry: null })).toBe('fangzhou/redis:7.0.15');
  expect(splitImage('localhost:5000/x/y')).toEqual({ repository: 'localhost:5000/x/y', tag: 'latest' });
  expect(splitImage('x/y:1.2@sha256:00')).toEqual({ repository: 'x/y', tag: '1.2' });
});

test('pull progress counts layers and the bytes of the layers announced so far', () => {
  const layers = new Map();
  const events: PullEvent[] = [
    { status: 'Pulling from fangzhou/redis', id: '7.0.15' },
    { status: 'Pulling fs layer', id: 'a', progressDetail: {} },
    { status: 'Pulling fs layer', id: 'b', progressDetail: {} },
    { status: 'Already exists', id: 'c' },
    { status: 'Downloading', id: 'a', progressDetail: { current: 500, total: 1000 } },
    { status: 'Downloading', id: 'b', progressDetail: { current: 100, total: 3000 } },
  ];
  events.forEach((e) => trackLayer(layers, e));
  expect(pullProgress('fangzhou/redis:7.0.15', layers)).toEqual({ image: 'fangzhou/redis:7.0.15', layers: 3, layersDone: 1, bytesDone: 600, bytesTotal: 4000 });
  trackLayer(layers, { status: 'Download complete', id: 'a' });
  trackLayer(layers, { status: 'Pull complete', id: 'a' });
  expect(pullProgress('x', layers)).toMatchObject({ layers: 3, layersDone: 2, bytesDone: 1100, bytesTotal: 4000 });
});

test.each([
  ['manifest for 10.77.0.1:5000/fangzhou/redis@sha256:abab not found: manifest unknown: manifest unknown',
    `image fangzhou/redis:7.0.15 (sha256:abababababab…) is not in the registry at 10.77.0.1:5000; push it (scripts/build-images.sh --push 10.77.0.1:5000) or import a bundle (fz image import)`],
  ['Get "https://10.77.0.1:5000/v2/": http: server gave HTTP response to HTTPS client',
    'this host\'s Docker engine does not trust the registry at 10.77.0.1:5000 (plain HTTP): add "insecure-registries": ["10.77.0.1:5000"] to /etc/docker/daemon.json (or --insecure-registry 10.77.0.1:5000), or install the platform CA under /etc/docker/certs.d/10.77.0.1:5000/'],
  ['Get "http://10.77.0.1:5000/v2/": dial tcp 10.77.0.1:5000: connect: no route to host',
    'cannot reach the registry at 10.77.0.1:5000 to pull fangzhou/redis:7.0.15 (sha256:abababababab…): Get "http://10.77.0.1:5000/v2/": dial tcp 10.77.0.1:5000: connect: no route to host'],
])('the engine saying "%s" becomes an error the operator can act on', (engine, message) => {
  expect(pullFailure(pinned, engine)).toBe(message);
});
