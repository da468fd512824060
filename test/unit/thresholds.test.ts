import { memoryVerdict } from '../../subgraphs/butler/thresholds';

const MB = 1024 * 1024;
const now = new Date('2026-12-02T04:00:00Z');
const before = (s: number) => new Date(now.getTime() - s * 1000).toISOString();

test('memory below 90% of the limit is fine, whatever came before', () => {
  expect(memoryVerdict(28 * MB, 32, undefined, now)).toBe('OK');
  expect(memoryVerdict(28 * MB, 32, before(600), now)).toBe('OK');
});

test('memory above 90% starts a spell, and raises the alarm only once the spell lasted 2 minutes', () => {
  expect(memoryVerdict(29 * MB, 32, undefined, now)).toBe('HIGH_SINCE_NOW');
  expect(memoryVerdict(29 * MB, 32, before(119), now)).toBe('HIGH');
  expect(memoryVerdict(31 * MB, 32, before(120), now)).toBe('ALARM');
});
