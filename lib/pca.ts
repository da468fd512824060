/**
 * PCA, the platform's certificate authority: X.509 with @peculiar/x509 on node:crypto's WebCrypto, ECDSA P-256
 * throughout. Plain functions over PEM text: create the CA, make a key pair and a certificate request (a runner, on
 * its own host: its private key never leaves it), issue server and host certificates, and check a client
 * certificate (chain, validity, whose host). Ark signs hosts' requests (subgraphs/ark/certificates.ts), server mode
 * serves HTTPS with a certificate of its own (server/tls.ts), lib/auth ties a host's requests to its certificate.
 *
 * The CA lives in a folder of its own (FZ_CA_DIR): `ca.crt`, and `ca.key` readable by its owner only (0600).
 * The key is never in the store, a log line, an event or an answer.
 */
import { createHash, webcrypto } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import * as x509 from '@peculiar/x509';
import { config } from './config';

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

x509.cryptoProvider.set(webcrypto as never);

const KEY_ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGNING = { name: 'ECDSA', hash: 'SHA-256' } as const;
const HOST_URI_PREFIX = 'urn:fangzhou:host:';
/**
 * Issued certificates start this far in the past (at most a twentieth of their lifetime), so a host whose clock is a
 * little behind accepts them at once.
 */
const BACKDATE_MS = 5 * 60_000;

export interface Ca {
  cert: x509.X509Certificate;
  key: CryptoKey;
  certPem: string;
}

/** What the platform keeps of a certificate: enough to recognise it and to know when it expires. */
export interface CertificateInfo {
  serial: string;
  subject: string;
  notBefore: string;
  notAfter: string;
  /** SHA-256 of the DER encoding, hex. */
  fingerprint: string;
  /** The host the certificate was issued to (its URI SAN), for host certificates. */
  hostId: string | null;
}

/** A certificate that does not hold: why, in words a person can act on. */
export class CertificateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CertificateError';
  }
}

export const hostUri = (hostId: string) => `${HOST_URI_PREFIX}${hostId}`;

const randomSerial = () => {
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0] &= 0x7f; // positive
  bytes[0] |= 0x01; // no leading zero byte
  return Buffer.from(bytes).toString('hex');
};

async function keyPair(): Promise<CryptoKeyPair> {
  return webcrypto.subtle.generateKey(KEY_ALGORITHM, true, ['sign', 'verify']) as Promise<CryptoKeyPair>;
}

async function privateKeyPem(key: CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', key);
  return x509.PemConverter.encode(der, 'PRIVATE KEY');
}

async function importPrivateKey(pem: string): Promise<CryptoKey> {
  return webcrypto.subtle.importKey('pkcs8', x509.PemConverter.decodeFirst(pem), KEY_ALGORITHM, false, ['sign']);
}

/** A new self-signed CA, valid for `lifetimeDays`. */
export async function createCa(commonName: string, lifetimeDays = 3650, now = new Date()): Promise<{ certPem: string; keyPem: string }> {
  const keys = await keyPair();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: `CN=${escapeDn(commonName)}`,
    notBefore: new Date(now.getTime() - BACKDATE_MS),
    notAfter: new Date(now.getTime() + lifetimeDays * 86_400_000),
    signingAlgorithm: SIGNING,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: cert.toString('pem'), keyPem: await privateKeyPem(keys.privateKey) };
}

export async function loadCa(certPem: string, keyPem: string): Promise<Ca> {
  return { cert: new x509.X509Certificate(certPem), key: await importPrivateKey(keyPem), certPem };
}

const CA_CERT = 'ca.crt';
const CA_KEY = 'ca.key';
/** The CA certificate of a CA folder: what clients trust the API by. */
export const caCertFile = (dir: string) => path.join(dir, CA_CERT);

/**
 * The CA of a folder, created there on first use (`ca.key` 0600, `ca.crt`). A key file others may read is refused:
 * whoever reads it can act as any host.
 */
export async function openCaDir(dir: string, commonName = 'Fangzhou platform CA'): Promise<Ca> {
  const certFile = path.join(dir, CA_CERT);
  const keyFile = path.join(dir, CA_KEY);
  if (!fs.existsSync(keyFile)) {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const created = await createCa(commonName);
    try {
      // Exclusive: of two replicas starting on one new folder, one creates the CA and the other reads it.
      fs.writeFileSync(keyFile, created.keyPem, { mode: 0o600, flag: 'wx' });
      fs.writeFileSync(certFile, created.certPem, { mode: 0o644 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
  const mode = fs.statSync(keyFile).mode & 0o777;
  if (mode & 0o077) throw new CertificateError(`${keyFile} may be read by others (mode ${mode.toString(8)}): chmod 600 it`);
  return loadCa(fs.readFileSync(certFile, 'utf8'), fs.readFileSync(keyFile, 'utf8'));
}

const opened = new Map<string, Promise<Ca>>();
/** The CA of FZ_CA_DIR (opened once per process), or null when the CA is off. */
export function platformCa(dir = config().ca.dir): Promise<Ca> | null {
  if (!dir) return null;
  let ca = opened.get(dir);
  if (!ca) {
    ca = openCaDir(dir);
    ca.catch(() => opened.delete(dir));
    opened.set(dir, ca);
  }
  return ca;
}

/** A key pair and a request for a certificate of it (the request is signed by the key: proof the requester holds it). */
export async function createKeyAndCsr(commonName: string): Promise<{ keyPem: string; csrPem: string }> {
  const keys = await keyPair();
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: `CN=${escapeDn(commonName)}`, keys, signingAlgorithm: SIGNING });
  return { keyPem: await privateKeyPem(keys.privateKey), csrPem: csr.toString('pem') };
}

/** A certificate request that is well formed, signed by its own key, for an ECDSA P-256 key; else CertificateError. */
export async function checkCsr(csrPem: string): Promise<x509.Pkcs10CertificateRequest> {
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(csrPem);
  } catch {
    throw new CertificateError('csr is not a PEM certificate request (-----BEGIN CERTIFICATE REQUEST-----)');
  }
  const algorithm = csr.publicKey.algorithm as webcrypto.EcKeyAlgorithm;
  if (algorithm.name !== 'ECDSA' || algorithm.namedCurve !== 'P-256') throw new CertificateError('csr must be for an ECDSA P-256 key');
  if (!(await csr.verify())) throw new CertificateError('csr is not signed by the key it names');
  return csr;
}

export interface IssueRequest {
  /** The subject's public key: from a checked request, or a key made for a server. */
  publicKey: x509.PublicKey | CryptoKey;
  commonName: string;
  usage: 'server' | 'client';
  /** Subject alternative names: DNS names and IP addresses (server), the host (client). */
  dnsNames?: string[];
  ips?: string[];
  hostId?: string;
  lifetimeSeconds: number;
  now?: Date;
}

/** A certificate signed by the CA. */
export async function issueCertificate(ca: Ca, request: IssueRequest): Promise<string> {
  const now = request.now ?? new Date();
  const names: x509.JsonGeneralName[] = [
    ...(request.dnsNames ?? []).map((value) => ({ type: 'dns' as const, value })),
    ...(request.ips ?? []).map((value) => ({ type: 'ip' as const, value })),
    ...(request.hostId ? [{ type: 'url' as const, value: hostUri(request.hostId) }] : []),
  ];
  const publicKey = request.publicKey instanceof x509.PublicKey ? await request.publicKey.export() : request.publicKey;
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: `CN=${escapeDn(request.commonName)}`,
    issuer: ca.cert.subject,
    notBefore: new Date(Math.max(now.getTime() - Math.min(BACKDATE_MS, request.lifetimeSeconds * 50), ca.cert.notBefore.getTime())),
    notAfter: new Date(Math.min(now.getTime() + request.lifetimeSeconds * 1000, ca.cert.notAfter.getTime())),
    signingAlgorithm: SIGNING,
    publicKey,
    signingKey: ca.key,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
      new x509.ExtendedKeyUsageExtension([request.usage === 'server' ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth]),
      ...(names.length ? [new x509.SubjectAlternativeNameExtension(names)] : []),
      await x509.SubjectKeyIdentifierExtension.create(publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(await ca.cert.publicKey.export()),
    ],
  });
  return cert.toString('pem');
}

/** A key pair made here and a server certificate for it (server mode's own; its key stays in the process). */
export async function issueServerCertificate(ca: Ca, names: string[], lifetimeSeconds: number, now = new Date()): Promise<{ certPem: string; keyPem: string }> {
  const keys = await keyPair();
  const isIp = (n: string) => /^[0-9.]+$/.test(n) || n.includes(':');
  const certPem = await issueCertificate(ca, {
    publicKey: keys.publicKey, commonName: names[0] ?? 'fangzhou', usage: 'server',
    dnsNames: names.filter((n) => !isIp(n)), ips: names.filter(isIp), lifetimeSeconds, now,
  });
  return { certPem, keyPem: await privateKeyPem(keys.privateKey) };
}

export function describeCertificate(pem: string): CertificateInfo {
  const cert = new x509.X509Certificate(pem);
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  const uri = san?.names.items.find((n) => n.type === 'url' && n.value.startsWith(HOST_URI_PREFIX));
  return {
    serial: cert.serialNumber,
    subject: cert.subject,
    notBefore: cert.notBefore.toISOString(),
    notAfter: cert.notAfter.toISOString(),
    fingerprint: createHash('sha256').update(Buffer.from(cert.rawData)).digest('hex'),
    hostId: uri ? uri.value.slice(HOST_URI_PREFIX.length) : null,
  };
}

/** When a certificate is due for renewal: at two thirds of its lifetime. */
export function renewalDue(info: Pick<CertificateInfo, 'notBefore' | 'notAfter'>): Date {
  const from = Date.parse(info.notBefore);
  return new Date(from + ((Date.parse(info.notAfter) - from) * 2) / 3);
}

/** Certificates whose signature this process checked, per CA: a host presents the same one on every request. */
const verified = new WeakMap<Ca, Map<string, CertificateInfo>>();
const VERIFIED_MAX = 10_000;

/**
 * A certificate the CA signed and that is valid now; its description, else CertificateError saying what is wrong
 * (another CA, expired, not yet valid). The signature is checked once per certificate and process; validity each time.
 */
export async function verifyCertificate(ca: Ca, pem: string, now = new Date()): Promise<CertificateInfo> {
  let known = verified.get(ca);
  if (!known) verified.set(ca, (known = new Map()));
  let info = known.get(pem);
  if (!info) {
    let cert: x509.X509Certificate;
    try {
      cert = new x509.X509Certificate(pem);
    } catch {
      throw new CertificateError('the client certificate is not a PEM certificate');
    }
    const signed = cert.issuer === ca.cert.subject && await cert.verify({ publicKey: ca.cert.publicKey, signatureOnly: true }).catch(() => false);
    if (!signed) throw new CertificateError(`the client certificate (issuer ${cert.issuer}) was not issued by this platform's CA`);
    info = describeCertificate(pem);
    if (known.size >= VERIFIED_MAX) known.delete(known.keys().next().value!);
    known.set(pem, info);
  }
  if (Date.parse(info.notAfter) <= now.getTime()) throw new CertificateError(`the client certificate expired at ${info.notAfter}`);
  if (Date.parse(info.notBefore) > now.getTime()) throw new CertificateError(`the client certificate is not valid before ${info.notBefore}`);
  return info;
}

/**
 * The host's client certificate holds: issued by the CA, valid now, issued to this host, and one of the serials its
 * host record names (the current one, or the one it replaced while the runner switches).
 */
export async function checkHostCertificate(ca: Ca, pem: string | null | undefined, hostId: string, serials: (string | null | undefined)[], now = new Date()): Promise<CertificateInfo> {
  if (!pem) throw new CertificateError(`host ${hostId} must present its client certificate (mutual TLS): this API has its CA on`);
  const info = await verifyCertificate(ca, pem, now);
  if (info.hostId !== hostId) throw new CertificateError(`the client certificate belongs to ${info.hostId ? `host ${info.hostId}` : 'no host'}, not to host ${hostId}`);
  if (!serials.includes(info.serial)) throw new CertificateError(`the client certificate ${info.serial} of host ${hostId} was replaced or revoked`);
  return info;
}

/** RFC 4514: a value with , + " \ < > ; = or leading/trailing space escaped. */
const escapeDn = (value: string) => value.replace(/([,+"\\<>;=])/g, '\\$1').replace(/^ | $/g, '\\ ');
