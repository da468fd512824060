import { Backoff } from '../../runner/agent';

/**
 * The README: the runner "backs off (1 s doubling to 30 s) while the API or the engine is unreachable". The waits of
 * its sync loop and of its engine event stream, failure after failure, and after a success.
 */
test('1 s doubling to 30 s, then 30 s for as long as failures go on; a success starts again from 1 s', () => {
  const backoff = new Backoff();
  const waits = Array.from({ length: 9 }, () => backoff.next());
  expect(waits).toEqual([1, 2, 4, 8, 16, 30, 30, 30, 30]);
  backoff.reset();
  expect([backoff.next(), backoff.next()]).toEqual([1, 2]);
});
