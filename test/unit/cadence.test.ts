import { config } from '../../lib/config';
import { cadenceFor, silenceFor } from '../../subgraphs/ark/cadence';

const defaults = { ...config(), heartbeatSeconds: 1, runnerPollSeconds: 2, hostDownSeconds: 5, maxHeartbeatsPerSecond: 50, maxPollsPerSecond: 25, maxNoticesPerSecond: 50 };

test('up to the budgets the configured cadence holds; past them every interval and host-down stretch with the fleet', () => {
  expect(cadenceFor(1, defaults)).toEqual({ heartbeatSeconds: 1, pollSeconds: 2, hostDownSeconds: 5, noticeSeconds: 1, noticeSpreadSeconds: 0 });
  expect(cadenceFor(50, defaults)).toEqual({ heartbeatSeconds: 1, pollSeconds: 2, hostDownSeconds: 5, noticeSeconds: 1, noticeSpreadSeconds: 0 });
  expect(cadenceFor(51, defaults)).toEqual({ heartbeatSeconds: 2, pollSeconds: 3, hostDownSeconds: 10, noticeSeconds: 2, noticeSpreadSeconds: 2 });
  expect(cadenceFor(100, defaults)).toEqual({ heartbeatSeconds: 2, pollSeconds: 4, hostDownSeconds: 10, noticeSeconds: 2, noticeSpreadSeconds: 2 });
  expect(cadenceFor(1000, defaults)).toEqual({ heartbeatSeconds: 20, pollSeconds: 40, hostDownSeconds: 100, noticeSeconds: 20, noticeSpreadSeconds: 20 });
});

test('a host is judged by the interval it was last told, never by a shorter one', () => {
  expect(silenceFor({ heartbeatSeconds: 20 }, defaults)).toMatchObject({ heartbeatSeconds: 20, hostDownSeconds: 100 });
  expect(silenceFor({ heartbeatSeconds: null }, defaults)).toMatchObject({ heartbeatSeconds: 1, hostDownSeconds: 5 });
  expect(silenceFor({ heartbeatSeconds: 0.5 }, defaults)).toMatchObject({ heartbeatSeconds: 1, hostDownSeconds: 5 });
});
