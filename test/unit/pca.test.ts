import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  checkCsr, checkHostCertificate, createCa, createKeyAndCsr, describeCertificate, issueCertificate, issueServerCertificate, loadCa,
  openCaDir, renewalDue, verifyCertificate, type Ca,
} from '../../lib/pca';

const newCa = async (name = 'Test CA') => {
  const { certPem, keyPem } = await createCa(name);
  return loadCa(certPem, keyPem);
};

/** What a runner does at registration, and what Ark does with its request. */
async function hostCertificate(ca: Ca, hostId: string, lifetimeSeconds = 3600, now = new Date()) {
  const { csrPem } = await createKeyAndCsr('runner');
  const csr = await checkCsr(csrPem);
  return issueCertificate(ca, { publicKey: csr.publicKey, commonName: hostId, usage: 'client', hostId, lifetimeSeconds, now });
}

describe('the platform CA', () => {
  let ca: Ca;
  beforeAll(async () => {
    ca = await newCa();
  });

  test('issues a host certificate that names the host, verifies against the CA and is due for renewal at 2/3 of its life', async () => {
    const pem = await hostCertificate(ca, 'h-1', 3000);
    const info = await checkHostCertificate(ca, pem, 'h-1', [describeCertificate(pem).serial]);
    expect(info.hostId).toBe('h-1');
    expect(info.subject).toBe('CN=h-1');
    // Node's own X.509 agrees: signed by the CA, for client authentication.
    const node = new X509Certificate(pem);
    expect(node.verify(new X509Certificate(ca.certPem).publicKey)).toBe(true);
    expect(node.keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']);
    const due = renewalDue(info).getTime();
    expect(due - Date.parse(info.notBefore)).toBeCloseTo((2 / 3) * (Date.parse(info.notAfter) - Date.parse(info.notBefore)), -2);
  });

  test('refuses a certificate of another CA', async () => {
    const other = await newCa('Test CA');
    const pem = await hostCertificate(other, 'h-1');
    await expect(verifyCertificate(ca, pem)).rejects.toThrow(/not issued by this platform's CA/);
    await expect(checkHostCertificate(ca, pem, 'h-1', [describeCertificate(pem).serial])).rejects.toThrow(/not issued by this platform's CA/);
  });

  test('refuses an expired certificate and one not valid yet', async () => {
    const pem = await hostCertificate(ca, 'h-1', 60);
    const { serial, notAfter } = describeCertificate(pem);
    await expect(checkHostCertificate(ca, pem, 'h-1', [serial], new Date(Date.parse(notAfter) + 1000))).rejects.toThrow(/expired at/);
    await expect(checkHostCertificate(ca, pem, 'h-1', [serial], new Date(Date.now() - 3600_000))).rejects.toThrow(/not valid before/);
  });

  test("refuses another host's certificate, a replaced one and none at all", async () => {
    const pem = await hostCertificate(ca, 'h-2');
    const { serial } = describeCertificate(pem);
    await expect(checkHostCertificate(ca, pem, 'h-1', [serial])).rejects.toThrow('belongs to host h-2, not to host h-1');
    await expect(checkHostCertificate(ca, pem, 'h-2', ['0abc', null])).rejects.toThrow(/replaced or revoked/);
    await expect(checkHostCertificate(ca, undefined, 'h-2', [serial])).rejects.toThrow(/must present its client certificate/);
    const server = await issueServerCertificate(ca, ['localhost', '127.0.0.1'], 3600);
    await expect(checkHostCertificate(ca, server.certPem, 'h-2', [describeCertificate(server.certPem).serial])).rejects.toThrow(/belongs to no host/);
  });

  test('refuses a request not signed by its key, and one that is not a request', async () => {
    const { csrPem } = await createKeyAndCsr('runner');
    const der = Buffer.from(csrPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    der[der.length - 5] ^= 0xff; // inside the signature
    const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
    await expect(checkCsr(tampered)).rejects.toThrow(/not signed by the key it names|not a PEM certificate request/);
    await expect(checkCsr('hello')).rejects.toThrow('csr is not a PEM certificate request');
  });

  test('issues a server certificate with the names and addresses clients reach it at', async () => {
    const { certPem } = await issueServerCertificate(ca, ['api.fleet.example', '10.0.0.5', 'localhost'], 3600);
    const node = new X509Certificate(certPem);
    expect(node.subjectAltName).toBe('DNS:api.fleet.example, DNS:localhost, IP Address:10.0.0.5');
    expect(node.checkHost('api.fleet.example')).toBe('api.fleet.example');
    expect(node.checkIP('10.0.0.5')).toBe('10.0.0.5');
    expect(node.ca).toBe(false);
  });

  test('keeps its key in a folder of its own, readable by its owner only, and refuses a key others may read', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fz-ca-'));
    try {
      const first = await openCaDir(path.join(dir, 'ca'));
      expect(fs.statSync(path.join(dir, 'ca', 'ca.key')).mode & 0o777).toBe(0o600);
      const again = await openCaDir(path.join(dir, 'ca'));
      expect(again.certPem).toBe(first.certPem);
      expect(new X509Certificate(first.certPem).ca).toBe(true);
      fs.chmodSync(path.join(dir, 'ca', 'ca.key'), 0o644);
      await expect(openCaDir(path.join(dir, 'ca'))).rejects.toThrow(/may be read by others \(mode 644\): chmod 600 it/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
