/**
 * A real SMTP server for tests: a child `node` process running `smtp-server` from npm on a free loopback port. Every
 * message it accepts is appended to a file as one JSON line ({from, to, raw, receivedAt}); `messages()` reads and
 * parses them. It is a separate process speaking SMTP over TCP, not an in-process mock transport.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface ReceivedMail {
  from: string;
  to: string[];
  subject: string;
  /** Header names in lower case; folded lines joined. */
  headers: Record<string, string>;
  /** The body, quoted-printable or base64 decoded. */
  text: string;
  raw: string;
  receivedAt: string;
}

export interface SmtpServer {
  /** `smtp://127.0.0.1:<port>`, for FZ_SMTP_URL. */
  url: string;
  port: number;
  pid: number;
  messages(): ReceivedMail[];
  stop(): Promise<void>;
}

export interface SmtpOptions {
  /** Recipients the server refuses with `550 mailbox unavailable`. */
  reject?: string[];
}

// Runs in the child. No AUTH, no STARTTLS: a plain loopback relay that records what it is given.
const CHILD = `
const fs = require('node:fs');
const { SMTPServer } = require(process.env.SMTP_SERVER_MODULE);
const out = process.env.SMTP_OUT;
const reject = new Set(JSON.parse(process.env.SMTP_REJECT || '[]').map((a) => a.toLowerCase()));
const server = new SMTPServer({
  authOptional: true,
  disabledCommands: ['AUTH', 'STARTTLS'],
  logger: false,
  banner: 'fangzhou test smtp',
  onRcptTo(address, session, callback) {
    if (reject.has(address.address.toLowerCase())) {
      const err = new Error('mailbox ' + address.address + ' unavailable');
      err.responseCode = 550;
      return callback(err);
    }
    callback();
  },
  onData(stream, session, callback) {
    const chunks = [];
    stream.on('data', (c) => chunks.push(c));
    stream.on('end', () => {
      fs.appendFileSync(out, JSON.stringify({
        from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
        to: session.envelope.rcptTo.map((r) => r.address),
        raw: Buffer.concat(chunks).toString('utf8'),
        receivedAt: new Date().toISOString(),
      }) + '\\n');
      callback(null, 'queued');
    });
  },
});
server.on('error', (err) => { process.stderr.write('smtp error: ' + err.message + '\\n'); });
server.listen(0, '127.0.0.1', () => { process.stdout.write('LISTENING ' + server.server.address().port + '\\n'); });
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
`;

function decodeQuotedPrintable(text: string): string {
  const soft = Buffer.from(text.replace(/=\r?\n/g, ''), 'utf8');
  const bytes: number[] = [];
  for (let i = 0; i < soft.length; i++) {
    const hex = soft[i] === 0x3d ? soft.subarray(i + 1, i + 3).toString('latin1') : '';
    if (/^[0-9A-Fa-f]{2}$/.test(hex)) {
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else {
      bytes.push(soft[i]);
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

/** RFC 2047 encoded words (`=?UTF-8?Q?…?=`, `=?UTF-8?B?…?=`) in a header value; whitespace between two words goes. */
function decodeWords(value: string): string {
  return value
    .replace(/(\?=)\s+(=\?)/g, '$1$2')
    .replace(/=\?([^?]+)\?([QqBb])\?([^?]*)\?=/g, (_, _charset: string, enc: string, data: string) =>
      enc.toUpperCase() === 'B' ? Buffer.from(data, 'base64').toString('utf8') : decodeQuotedPrintable(data.replace(/_/g, ' ')));
}

/** A minimal RFC 5322 split: unfolded headers and a decoded single-part body (what nodemailer sends for `text`). */
export function parseMail(raw: string): { headers: Record<string, string>; text: string } {
  const split = raw.search(/\r?\n\r?\n/);
  const head = split < 0 ? raw : raw.slice(0, split);
  const body = split < 0 ? '' : raw.slice(split).replace(/^\r?\n\r?\n/, '');
  const headers: Record<string, string> = {};
  for (const line of head.replace(/\r?\n[ \t]+/g, ' ').split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = decodeWords(line.slice(colon + 1).trim());
  }
  const encoding = (headers['content-transfer-encoding'] ?? '').toLowerCase();
  const text = encoding === 'quoted-printable' ? decodeQuotedPrintable(body)
    : encoding === 'base64' ? Buffer.from(body, 'base64').toString('utf8')
      : body;
  return { headers, text: text.replace(/\r\n/g, '\n') };
}

export async function startSmtpServer(options: SmtpOptions = {}, timeoutMs = 15_000): Promise<SmtpServer> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fz-smtp-'));
  const out = path.join(dir, 'messages.jsonl');
  fs.writeFileSync(out, '');
  const child = spawn(process.execPath, ['-e', CHILD], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, SMTP_SERVER_MODULE: require.resolve('smtp-server'), SMTP_OUT: out, SMTP_REJECT: JSON.stringify(options.reject ?? []) },
  });
  let output = '';
  const onExit = () => { child.kill('SIGKILL'); };
  process.once('exit', onExit);
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`the SMTP server did not start within ${timeoutMs} ms. Output:\n${output}`)), timeoutMs);
    const fail = (err: Error) => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(err);
    };
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const match = /LISTENING (\d+)/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(Number(match[1]));
      }
    });
    child.stderr!.on('data', (chunk: Buffer) => { output = (output + chunk.toString()).slice(-4000); });
    child.once('error', fail);
    child.once('exit', (code, signal) => fail(new Error(`the SMTP server exited (code ${code}, signal ${signal}) before listening. Output:\n${output}`)));
  });
  let stopped: Promise<void> | undefined;
  return {
    url: `smtp://127.0.0.1:${port}`,
    port,
    pid: child.pid!,
    messages: () => fs.readFileSync(out, 'utf8').split('\n').filter(Boolean).map((line) => {
      const message = JSON.parse(line) as { from: string; to: string[]; raw: string; receivedAt: string };
      const { headers, text } = parseMail(message.raw);
      return { ...message, headers, text, subject: headers.subject ?? '' };
    }),
    stop: () => (stopped ??= new Promise<void>((resolve) => {
      process.off('exit', onExit);
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      child.once('exit', () => {
        clearTimeout(timer);
        fs.rmSync(dir, { recursive: true, force: true });
        resolve();
      });
      child.kill('SIGTERM');
    })),
  };
}
