import { waitFor, waitUntil } from '../support/wait';

test('waitUntil succeeds only on true: a description of what it saw is "not yet", and is shown when time runs out', async () => {
  // The NATS routes check: `routes.every((n) => n === 2) || routes.join(',')` must not pass while the routes are 1,2.
  const routes = [1, 2];
  await expect(waitUntil('every server to have two routes', async () => routes.every((n) => n === 2) || routes.join(','), 200, 20))
    .rejects.toThrow('timed out after 0.2s waiting for every server to have two routes; last saw: "1,2"');
});

test('waitUntil returns once the check says true', async () => {
  let calls = 0;
  await waitUntil('the third call', async () => ++calls === 3, 5_000, 1);
  expect(calls).toBe(3);
});

test('waitFor returns the object it found, and treats strings, numbers and false as not found', async () => {
  let n = 0;
  const found = await waitFor('a record', async () => (++n < 3 ? false : { id: 'r-1' }), 5_000, 1);
  expect(found).toEqual({ id: 'r-1' });
  await expect(waitFor('a record', async () => 'r-1' as unknown as object, 100, 10)).rejects.toThrow('last saw: "r-1"');
});

test('an error thrown by the check is what it last saw', async () => {
  await expect(waitUntil('the API', async () => { throw new Error('connect ECONNREFUSED 127.0.0.1:3000'); }, 100, 10))
    .rejects.toThrow('waiting for the API; last saw: Error: connect ECONNREFUSED 127.0.0.1:3000');
});
