import { log } from '../lib/log';
import type { Store } from '../lib/store';
import { holdLease, releaseLease } from './lease';

/**
 * The scheduled functions of serverless.yml (watchdog, reconcile, publish), run every `everyMs` by whichever
 * replica holds the function's lease: N replicas run each tick once. Each function has its own loop and lease, so a
 * slow reconcile never delays the watchdog. The holder renews its lease at every tick and while a run lasts; if it
 * dies, another replica takes over when the lease runs out (`leaseMs`), and at once when the holder stops cleanly.
 */

export interface TickOptions {
  store: Store;
  /** This replica's name in the lease. */
  holder: string;
  functions: string[];
  run: (functionName: string) => Promise<unknown>;
  everyMs: number;
  leaseMs: number;
}

export interface Ticks {
  stop(): Promise<void>;
}

export function startTicks(options: TickOptions): Ticks {
  const { store, holder, everyMs, leaseMs } = options;
  let running = true;
  const sleeping = new Set<() => void>();
  const pause = () => new Promise<void>((resolve) => {
    const wake = () => { clearTimeout(timer); sleeping.delete(wake); resolve(); };
    const timer = setTimeout(wake, everyMs);
    sleeping.add(wake);
  });

  const loop = async (name: string) => {
    let held = false;
    while (running) {
      try {
        const holds = await holdLease(store, name, holder, leaseMs);
        if (holds !== held) log.info({ tick: name, holder }, holds ? 'took the tick lease' : 'another replica holds the tick lease');
        held = holds;
        if (held && running) {
          const started = Date.now();
          // Held for as long as the run takes, however long: renewed a few times per lease period.
          const renew = setInterval(() => void holdLease(store, name, holder, leaseMs).catch(() => undefined), leaseMs / 3);
          try {
            await options.run(name);
          } finally {
            clearInterval(renew);
          }
          log.debug({ tick: name, holder, ms: Date.now() - started }, 'tick ran');
        }
      } catch (err) {
        log.error({ err, tick: name }, 'tick failed; trying again at the next one');
      }
      if (running) await pause();
    }
    if (held) await releaseLease(store, name, holder).catch((err) => log.warn({ err, tick: name }, 'could not give up the tick lease; it expires'));
  };
  const loops = options.functions.map(loop);
  return {
    async stop() {
      running = false;
      for (const wake of [...sleeping]) wake();
      await Promise.all(loops);
    },
  };
}
