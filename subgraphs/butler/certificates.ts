import type { Store } from '../../lib/store';
import { listCertificates, listHosts } from '../ark';
import { raise, resolveAlarmsOfKindExcept } from './alarms';

/**
 * CERTIFICATE_EXPIRING: a certificate of the platform CA (a host's, a server replica's) that is within
 * `warningSeconds` of its expiry. Runners and servers renew theirs at two thirds of their lifetime, so this fires
 * only when a renewal keeps failing (or its runner is stopped); it resolves once the certificate was renewed, or the
 * host revoked or removed, or the server stopped. CRITICAL once expired.
 */
export async function checkCertificates(store: Store, warningSeconds: number, now = new Date()): Promise<void> {
  const expiring = (await listCertificates(store, await listHosts(store)))
    .filter((c) => Date.parse(c.notAfter) - now.getTime() < warningSeconds * 1000);
  for (const c of expiring) {
    const left = Date.parse(c.notAfter) - now.getTime();
    await raise(store, {
      kind: 'CERTIFICATE_EXPIRING', severity: left <= 0 ? 'CRITICAL' : 'WARNING', cause: c.cause, hostId: c.hostId,
      message: left <= 0
        ? `the certificate of ${c.subject} expired at ${c.notAfter}: it can no longer reach the API (${c.hostId ? 'register the host again' : 'restart that server'})`
        : `the certificate of ${c.subject} expires at ${c.notAfter} (in ${describe(left)}) and was not renewed: ${c.hostId ? 'is its runner running and reaching the API?' : 'is that server running?'}`,
    }, now);
  }
  await resolveAlarmsOfKindExcept(store, 'CERTIFICATE_EXPIRING', new Set(expiring.map((c) => c.cause)), now);
}

const describe = (ms: number) => {
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  if (s < 172_800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86_400)} days`;
};
