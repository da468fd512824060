import { foldBeat, type BeatStats, type Host } from '../../subgraphs/ark/hosts';

/** How the heartbeat's own write of the host keeps the figures the inspection's jitter check reads. */
const t0 = Date.parse('2026-12-02T10:00:00Z');
const at = (ms: number) => new Date(t0 + ms);

function beatAt(gaps: number[], session = 's1') {
  let host: Pick<Host, 'lastHeartbeatAt' | 'runnerSession' | 'status' | 'beats'> = { lastHeartbeatAt: at(0).toISOString(), runnerSession: session, status: 'READY', beats: null };
  let clock = 0;
  for (const gap of gaps) {
    clock += gap;
    host = { ...host, beats: foldBeat(host, session, at(clock)), lastHeartbeatAt: at(clock).toISOString() };
  }
  return host.beats as BeatStats;
}

test('regular beats: the smoothed gap is the interval and the jitter small', () => {
  const beats = beatAt(Array.from({ length: 50 }, (_, i) => (i % 2 ? 1020 : 980)));
  expect(beats.count).toBe(50);
  expect(Math.abs(beats.gapMs - 1000)).toBeLessThan(30);
  expect(beats.jitterMs).toBeLessThan(60);
  expect(beats.maxGapMs).toBe(1020);
});

test('one long gap is kept as the longest for a day, then gives way to the next gap', () => {
  const beats = beatAt([...Array(10).fill(1000), 3500, ...Array(10).fill(1000)]);
  expect(beats.maxGapMs).toBe(3500);
  expect(beats.maxGapAt).toBe(at(13_500).toISOString());
  const host = { lastHeartbeatAt: at(23_500).toISOString(), runnerSession: 's1', status: 'READY' as const, beats };
  const nextDay = foldBeat(host, 's1', new Date(Date.parse(beats.maxGapAt) + 86_400_001));
  expect(nextDay!.maxGapAt).not.toBe(beats.maxGapAt);
});

test('no gap is counted across a new runner session or an outage', () => {
  const host = { lastHeartbeatAt: at(0).toISOString(), runnerSession: 's1', status: 'READY' as const, beats: beatAt([1000, 1000]) };
  expect(foldBeat(host, 's2', at(60_000))).toBeNull();
  expect(foldBeat({ ...host, status: 'DOWN' }, 's1', at(60_000))).toBeNull();
});
