import type { SecureContextOptions } from 'node:tls';
import { log } from '../lib/log';
import { describeCertificate, issueServerCertificate, renewalDue, type Ca, type CertificateInfo } from '../lib/pca';

/**
 * Server mode's own certificate, with the platform CA on: a key pair made in this process (never written anywhere),
 * a certificate for the names and addresses clients reach the API at, issued again at two thirds of its lifetime
 * and handed to the listening servers without a restart. Clients are asked for a certificate but need not have one
 * (portals and scripts sign in with keys): lib/auth decides what a host runner must present.
 */

export interface ServerTls {
  /** For https.createServer and setSecureContext. */
  context(): SecureContextOptions & { requestCert: true; rejectUnauthorized: false };
  /** Called with the new context after each renewal. */
  onRenew(listener: () => void): void;
  info(): CertificateInfo;
  /** No more renewals; the certificate is forgotten (a stopped server's certificate raises no alarm). */
  stop(): Promise<void>;
}

export interface ServerTlsOptions {
  ca: Ca;
  names: string[];
  lifetimeSeconds: number;
  /** Keeps the current certificate's description where the expiry alarm finds it (null: this server stopped). */
  record(info: CertificateInfo | null): Promise<void>;
}

/** A renewal that failed is tried again after this long (or sooner for short lifetimes). */
const RETRY_MS = 60_000;
/** setTimeout's limit is ~24.8 days; a longer wait is taken in steps. */
const MAX_WAIT_MS = 24 * 3600_000;

export async function startServerTls(options: ServerTlsOptions): Promise<ServerTls> {
  const issue = async () => {
    const issued = await issueServerCertificate(options.ca, options.names, options.lifetimeSeconds);
    return { ...issued, info: describeCertificate(issued.certPem) };
  };
  let current = await issue();
  await options.record(current.info);
  const listeners: (() => void)[] = [];
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;

  const schedule = (ms: number) => {
    if (stopped) return;
    timer = setTimeout(() => void renewIfDue(), Math.max(0, Math.min(ms, MAX_WAIT_MS)));
    timer.unref();
  };
  const renewIfDue = async () => {
    const due = renewalDue(current.info).getTime();
    if (Date.now() < due) return schedule(due - Date.now());
    try {
      current = await issue();
      for (const listener of listeners) listener();
      await options.record(current.info);
      log.info({ serial: current.info.serial, notAfter: current.info.notAfter }, 'server certificate renewed');
      schedule(renewalDue(current.info).getTime() - Date.now());
    } catch (err) {
      log.error({ err }, 'server certificate renewal failed; trying again');
      schedule(Math.min(RETRY_MS, (options.lifetimeSeconds * 1000) / 30));
    }
  };
  schedule(renewalDue(current.info).getTime() - Date.now());

  return {
    context: () => ({ key: current.keyPem, cert: current.certPem, ca: options.ca.certPem, requestCert: true, rejectUnauthorized: false }),
    onRenew: (listener) => listeners.push(listener),
    info: () => current.info,
    stop: async () => {
      stopped = true;
      clearTimeout(timer);
      await options.record(null).catch((err) => log.warn({ err }, 'could not forget the server certificate; its expiry alarm will say so'));
    },
  };
}

/** The names a server certificate is for: those configured, the listen address (unless a wildcard) and loopback. */
export function serverNames(listenHost: string, configured: string | undefined): string[] {
  const names = (configured ?? '').split(',').map((n) => n.trim()).filter(Boolean);
  if (listenHost !== '0.0.0.0' && listenHost !== '::') names.push(listenHost);
  return [...new Set([...names, 'localhost', '127.0.0.1', '::1'])];
}
