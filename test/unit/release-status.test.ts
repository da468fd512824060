import type { Instance } from '../../subgraphs/ark/instances';
import { generationStatus, type ContainerRecord } from '../../subgraphs/ark/containers';
import { releaseStatus, type Release } from '../../subgraphs/panama/releases';

const release = (replicas: number) => ({ phase: 'ACTIVE', replicas }) as Release;
const instance = (n: number) => ({ id: `r-${n}`, specHash: 'h1' }) as Instance;
const container = (n: number, over: Partial<ContainerRecord> = {}) =>
  ({ instanceId: `r-${n}`, specHash: 'h1', state: 'RUNNING', health: 'HEALTHY', error: null, ...over }) as ContainerRecord;

test('RUNNING when every instance runs healthy at its current spec', () => {
  expect(releaseStatus(release(2), [instance(0), instance(1)], [container(0), container(1, { health: 'NONE' })]).status).toBe('RUNNING');
});

test('DEPLOYING while containers are missing, starting or at an old spec, with a count', () => {
  const status = releaseStatus(release(3), [instance(0), instance(1), instance(2)], [container(0), container(1, { health: 'STARTING' }), container(2, { specHash: 'old' })]);
  expect(status).toEqual({ status: 'DEPLOYING', message: '1 of 3 instances running' });
});

test('DEGRADED with the reason when an instance fails', () => {
  const status = releaseStatus(release(2), [instance(0), instance(1)], [container(0), container(1, { state: 'MISSING', error: 'image fangzhou/x:9 is not present on this host' })]);
  expect(status).toEqual({ status: 'DEGRADED', message: '1 of 2 instances failing; r-1: image fangzhou/x:9 is not present on this host' });
});

test('DEPLOYING with the pull in the message while instances wait for their image', () => {
  const pull = { image: 'fangzhou/redis:7.0.15 (sha256:331a8b83e72e…)', layers: 4, layersDone: 1, bytesDone: 5e6, bytesTotal: 2e7 };
  const status = releaseStatus(release(2), [instance(0), instance(1)], [container(0), container(1, { state: 'PULLING', containerId: '', pull })]);
  expect(status).toEqual({ status: 'DEPLOYING', message: '1 of 2 instances running; 1 pulling fangzhou/redis:7.0.15 (sha256:331a8b83e72e…) (1 of 4 layers, 25% of 20.0 MB)' });
});

test('DEPLOYING, not RUNNING, while an instance has not been placed yet', () => {
  expect(releaseStatus(release(3), [instance(0), instance(1)], [container(0), container(1)])).toEqual({ status: 'DEPLOYING', message: '2 of 3 instances running' });
});

test('PENDING with the reason while waiting for dependencies', () => {
  expect(releaseStatus({ phase: 'WAITING', placementError: null } as Release, [], [])).toEqual({ status: 'PENDING', message: 'waiting for its dependencies to run' });
});

test('DELETING once deletion was asked for', () => {
  expect(releaseStatus({ phase: 'DELETING' } as Release, [], [container(0)]).status).toBe('DELETING');
});

test('an instance whose only container is of an earlier spec is not failing: DEPLOYING until the new one reports', () => {
  const status = releaseStatus(release(2), [instance(0), instance(1)], [container(0), container(1, { specHash: 'old', health: 'UNHEALTHY' })]);
  expect(status).toEqual({ status: 'DEPLOYING', message: '1 of 2 instances running' });
});

const stopped = { state: 'FAILED', toVersion: '2.0.0', reason: 'r-1: running, unhealthy' } as Release['upgrade'];

test('a stopped upgrade leaves the release DEGRADED while some instances still serve', () => {
  const status = releaseStatus({ ...release(2), upgrade: stopped }, [instance(0), instance(1)], [container(0), container(1, { health: 'UNHEALTHY' })]);
  expect(status).toEqual({ status: 'DEGRADED', message: '1 of 2 instances serving; upgrade to 2.0.0 stopped: r-1: running, unhealthy' });
});

test('FAILED only when a stopped upgrade left nothing serving', () => {
  const status = releaseStatus({ ...release(1), upgrade: stopped }, [instance(0)], [container(0, { health: 'UNHEALTHY' })]);
  expect(status).toEqual({ status: 'FAILED', message: 'upgrade to 2.0.0 stopped: r-1: running, unhealthy' });
});

test('an instance status describes the container of its current spec, or says PENDING until that one reports', () => {
  const old = container(0, { containerId: 'c-old', specHash: 'h1' } as Partial<ContainerRecord>);
  expect(generationStatus(old, 'h1')).toBe(old);
  expect(generationStatus(old, 'h2')).toMatchObject({ specHash: 'h2', containerId: null, state: 'PENDING', health: 'STARTING', restartCount: 0 });
  expect(generationStatus(undefined, 'h2')).toBeNull();
});
