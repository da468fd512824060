import { AppError } from '../../lib/errors';
import { CertificateError, checkCsr, describeCertificate, issueCertificate, platformCa, type CertificateInfo } from '../../lib/pca';
import type { Store } from '../../lib/store';
import type { Host } from './hosts';

/**
 * The hosts' client certificates and the servers' certificates, as Ark keeps them: a host's current certificate and
 * the one it replaced are on its record (lib/auth accepts either, so requests in flight while the runner switches
 * still pass); the certificates of server-mode replicas are one item in `claims`. Only descriptions are kept: no
 * private key ever reaches the API (a runner sends a request signed by a key it keeps).
 */

export interface HostCertificate {
  certificate: string;
  caCertificate: string;
  notAfter: string;
}

const badCsr = (err: unknown) => {
  if (err instanceof CertificateError) return new AppError('BAD_USER_INPUT', err.message);
  return err;
};

/**
 * Checks a runner's certificate request before anything is written (registration spends its join token after). With
 * the CA off, a request is ignored: the host gets no certificate.
 */
export async function checkHostCsr(csrPem: string | null | undefined): Promise<void> {
  if (!platformCa()) return;
  if (!csrPem) throw new AppError('BAD_USER_INPUT', 'this API has its CA on: registerHost needs a csr (the runner makes a key pair and sends its certificate request; update the runner)');
  await checkCsr(csrPem).catch((err) => { throw badCsr(err); });
}

/** Signs the host's request (its subject and names are the CA's choice: the host id) and records the certificate. */
export async function issueHostCertificate(store: Store, hostId: string, csrPem: string, lifetimeSeconds: number, now = new Date()): Promise<HostCertificate> {
  const ca = await platformCa();
  if (!ca) throw new AppError('BAD_USER_INPUT', 'this API has no CA (FZ_CA_DIR is not set): there are no host certificates');
  const csr = await checkCsr(csrPem).catch((err) => { throw badCsr(err); });
  const certificate = await issueCertificate(ca, { publicKey: csr.publicKey, commonName: hostId, usage: 'client', hostId, lifetimeSeconds, now });
  const info = describeCertificate(certificate);
  const updated = await store.mutate<Host>('hosts', hostId, (h) => h && !h.tokenRevokedAt
    ? { ...h, certificate: info, previousCertificate: h.certificate ?? null }
    : undefined);
  if (updated?.certificate?.serial !== info.serial) throw new AppError('UNAUTHENTICATED', `host ${hostId} was revoked or removed: no certificate is issued to it`);
  return { certificate, caCertificate: ca.certPem, notAfter: info.notAfter };
}

const SERVERS_KEY = 'server-certificates';
interface ServerCertificates {
  key: string;
  servers: Record<string, CertificateInfo>;
}

/** A server-mode replica's certificate (by the endpoint it serves at), for the expiry alarm. */
export async function recordServerCertificate(store: Store, server: string, info: CertificateInfo | null): Promise<void> {
  await store.mutate<ServerCertificates & { seq: number }>('claims', SERVERS_KEY, (c) => {
    const servers = { ...(c?.servers ?? {}) };
    if (info) servers[server] = info;
    else if (servers[server]) delete servers[server];
    else return undefined;
    return { key: SERVERS_KEY, servers };
  });
}

export interface TrackedCertificate {
  /** What the alarm is about: `host:<id>` or `server:<endpoint>`. */
  cause: string;
  hostId: string | null;
  /** In words: `host h1 (h-…)`, `server https://10.0.0.5:3001`. */
  subject: string;
  notAfter: string;
}

/** Every certificate in use: those of hosts that are not revoked, and those of server-mode replicas. */
export async function listCertificates(store: Store, hosts: Host[]): Promise<TrackedCertificate[]> {
  const servers = (await store.get<ServerCertificates>('claims', SERVERS_KEY))?.servers ?? {};
  return [
    ...hosts.filter((h) => h.certificate && !h.tokenRevokedAt).map((h) => ({
      cause: `host:${h.id}`, hostId: h.id, subject: `host ${h.name} (${h.id})`, notAfter: h.certificate!.notAfter,
    })),
    ...Object.entries(servers).map(([server, info]) => ({ cause: `server:${server}`, hostId: null, subject: `server ${server}`, notAfter: info.notAfter })),
  ];
}
