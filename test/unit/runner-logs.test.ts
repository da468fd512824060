import { nanos, parseLogFrames } from '../../runner/logs';

/** Docker's multiplexed log stream: 8-byte headers (stream, size) before each payload. */
const frame = (stream: 1 | 2, text: string) => {
  const payload = Buffer.from(text, 'utf8');
  const header = Buffer.alloc(8);
  header[0] = stream;
  header.writeUInt32BE(payload.length, 4);
  return Buffer.concat([header, payload]);
};

test('engine log frames become lines with their time and stream', () => {
  const buffer = Buffer.concat([
    frame(1, '2026-12-02T10:00:00.123456789Z Ready to accept connections\n'),
    frame(2, '2026-12-02T10:00:01.5Z warning: 方舟\r\n2026-12-02T10:00:02Z second line\n'),
  ]);
  expect(parseLogFrames(buffer)).toEqual([
    { at: '2026-12-02T10:00:00.123456789Z', stream: 'STDOUT', text: 'Ready to accept connections' },
    { at: '2026-12-02T10:00:01.5Z', stream: 'STDERR', text: 'warning: 方舟' },
    { at: '2026-12-02T10:00:02Z', stream: 'STDERR', text: 'second line' },
  ]);
});

test('a line longer than 4 KiB is cut, and a cut frame at the end is ignored', () => {
  const long = `2026-12-02T10:00:00Z ${'x'.repeat(10_000)}\n`;
  const [line] = parseLogFrames(Buffer.concat([frame(1, long), Buffer.from([1, 0, 0])]));
  expect(line.text).toHaveLength(4096);
});

test('times compare to the nanosecond, across precisions and offsets', () => {
  expect(nanos('2026-12-02T10:00:00.123456789Z') > nanos('2026-12-02T10:00:00.123456788Z')).toBe(true);
  expect(nanos('2026-12-02T10:00:00.1Z')).toBe(nanos('2026-12-02T10:00:00.100000000Z'));
  expect(nanos('2026-12-02T12:00:00+02:00')).toBe(nanos('2026-12-02T10:00:00Z'));
  expect(nanos('not a time')).toBe(-1n);
});
