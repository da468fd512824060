import type { Store } from '../../lib/store';
import type { Host } from './hosts';
import { getInstance, type Instance } from './instances';
import { claimInstanceIp, freeInstanceIp, inSubnet } from './network';

/**
 * Instances get their address when they are placed or moved (instances.ts: placeInstances, migrateInstance), so that
 * config files can name it. At each sync this gives any instance of the host that still has no address on the
 * host's subnet (one placed before addresses were given at placement) a fixed one,
 * claimed first and then recorded on the instance; the address it had on its previous host is given back. An
 * instance keeps its address for as long as it stays on the host, so its container is re-created with the same one.
 * Returns the instances as they now are, and whether any address changed (DNS records then change too).
 */
export async function assignAddresses(store: Store, host: Pick<Host, 'id'> & { subnet: string }, instances: Instance[], now = new Date()): Promise<{ instances: Instance[]; changed: boolean }> {
  const hasOwn = (i: Pick<Instance, 'ip'>) => Boolean(i.ip && inSubnet(host.subnet, i.ip));
  const taken = new Set(instances.filter(hasOwn).map((i) => i.ip!));
  let changed = false;
  const out: Instance[] = [];
  for (const instance of instances) {
    if (hasOwn(instance)) {
      out.push(instance);
      continue;
    }
    const ip = await claimInstanceIp(store, instance.id, host.subnet, taken, (id) => getInstance(store, id), now);
    taken.add(ip);
    const updated = await store.mutate<Instance>('instances', instance.id, (i) => i && i.hostId === host.id && !hasOwn(i) ? { ...i, ip } : undefined);
    if (updated?.ip === ip) {
      if (instance.ip) await freeInstanceIp(store, instance);
      changed = true;
    } else {
      // Moved or removed meanwhile, or another sync gave it an address first.
      await freeInstanceIp(store, { id: instance.id, ip });
    }
    if (updated) out.push(updated);
  }
  return { instances: out, changed };
}
