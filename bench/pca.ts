/**
 * What the platform CA costs per operation (lib/pca.ts, pure functions, no stack): a runner's key pair and
 * certificate request, Ark signing it, the check lib/auth runs on every request of a host with the CA on (the
 * signature the first time a process sees a certificate; validity, host and serial each time), and a server
 * certificate with its key. Prints figures; asserts nothing.
 */
import { checkCsr, checkHostCertificate, createCa, createKeyAndCsr, describeCertificate, issueCertificate, issueServerCertificate, loadCa } from '../lib/pca';
import { now, printStats, roundStats, stats } from './lib';

const N = 300;

async function timed(label: string, n: number, step: () => Promise<unknown>) {
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = now();
    await step();
    samples.push(now() - t);
  }
  const s = stats(samples);
  printStats(label, s);
  return roundStats(s);
}

async function main() {
  const created = await createCa('bench CA');
  const ca = await loadCa(created.certPem, created.keyPem);
  let csrPem = '';
  const csr = await timed('runner: key pair + certificate request', N, async () => { csrPem = (await createKeyAndCsr('runner')).csrPem; });
  const certs: string[] = [];
  const issue = await timed('Ark: check the request + issue the cert', N, async () => {
    const request = await checkCsr(csrPem);
    certs.push(await issueCertificate(ca, { publicKey: request.publicKey, commonName: 'h-1', usage: 'client', hostId: 'h-1', lifetimeSeconds: 86_400 }));
  });
  const serials = certs.map((c) => describeCertificate(c).serial);
  let i = 0;
  // The signature is checked the first time a process sees a certificate; after that only validity, host and serial.
  const firstCheck = await timed('request: check a host certificate, first', N, () => checkHostCertificate(ca, certs[i], 'h-1', [serials[i++]]));
  const check = await timed('request: check a host certificate, again', N * 3, () => checkHostCertificate(ca, certs[0], 'h-1', [serials[0]]));
  const server = await timed('server: key pair + server certificate', N / 3, () => issueServerCertificate(ca, ['api.example', '10.0.0.5', 'localhost'], 86_400));
  console.log(JSON.stringify({ bench: 'pca', csr, issue, firstCheck, check, server }));
}

void main();
