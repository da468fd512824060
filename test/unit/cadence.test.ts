import { config } from '../../lib/config';
import { cadenceFor, silenceFor } from '../../subgraphs/ark/cadence';

const defaults = { ...config(), heartbeatSeconds: 1, runnerPollSeconds: 2, hostDownSeconds: 5, maxHeartbeatsPerSecond: 100, maxPollsPerSecond: 50 };

test('up to the budgets the configured cadence holds; past them every interval and host-down stretch with the fleet', () => {
  expect(cadenceFor(1, defaults)).toEqual({ heartbeatSeconds: 1, pollSeconds: 2, hostDownSeconds: 5 });
  expect(cadenceFor(100, defaults)).toEqual({ heartbeatSeconds: 1, pollSeconds: 2, hostDownSeconds: 5 });
  expect(cadenceFor(101, defaults)).toEqual({ heartbeatSeconds: 2, pollSeconds: 3, hostDownSeconds: 10 });
  expect(cadenceFor(300, defaults)).toEqual({ heartbeatSeconds: 3, pollSeconds: 6, hostDownSeconds: 15 });
  expect(cadenceFor(1000, defaults)).toEqual({ heartbeatSeconds: 10, pollSeconds: 20, hostDownSeconds: 50 });
});

test('a host is judged by the interval it was last told, never by a shorter one', () => {
  expect(silenceFor({ heartbeatSeconds: 10 }, defaults)).toMatchObject({ heartbeatSeconds: 10, hostDownSeconds: 50 });
  expect(silenceFor({ heartbeatSeconds: null }, defaults)).toMatchObject({ heartbeatSeconds: 1, hostDownSeconds: 5 });
  expect(silenceFor({ heartbeatSeconds: 0.5 }, defaults)).toMatchObject({ heartbeatSeconds: 1, hostDownSeconds: 5 });
});
