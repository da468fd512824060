import { sha256Json } from './ids';
import { log } from './log';
import type { Store, Versioned } from './store';

/**
 * The audit log (ALS): one item per mutation, appended to a hash chain. Each entry carries the hash of the one before,
 * and a head item names the last entry and its hash, so an edited entry (its hash no longer matches its fields), a
 * removed one (a gap, or a `prevHash` that matches nothing) and a cut-off tail (the head disagrees) are detected.
 * Appending is lock-free with single-item conditional writes: whoever creates entry n+1 first wins it; a loser (or
 * anyone finding the head behind an existing entry, e.g. after a crash) moves the head forward and tries n+2.
 */
export type Outcome = 'OK' | 'ERROR' | 'DENIED';

export interface AuditFields {
  at: string;
  principal: string;
  role: string | null;
  operation: string;
  /** JSON of the arguments with secret values replaced by "[redacted]". */
  input: string;
  outcome: Outcome;
  code: string | null;
  requestId: string | null;
}

export interface AuditEntry extends AuditFields {
  seq: number;
  prevHash: string;
  hash: string;
}

/** As stored: `n` is the entry's place in the chain (`seq` is the store's write counter of every item). */
interface StoredEntry extends Omit<AuditEntry, 'seq'>, Versioned {
  id: string;
  n: number;
}

interface Head extends Versioned {
  id: string;
  last: number;
  hash: string;
}

export const GENESIS = '0'.repeat(64);
const HEAD = 'head';
const entryId = (seq: number) => `e-${String(seq).padStart(12, '0')}`;

/** The hash of an entry: its fields and its predecessor's hash, canonical JSON (independent of key order). */
export const hashEntry = (e: AuditFields & { seq: number; prevHash: string }) => sha256Json({
  seq: e.seq, prevHash: e.prevHash, at: e.at, principal: e.principal, role: e.role, operation: e.operation,
  input: e.input, outcome: e.outcome, code: e.code, requestId: e.requestId,
});

const SECRET_KEY = /secret|token|password|passphrase|private|credential|target/i;

/** The input as audited: values under secret-looking keys are replaced, names kept (e.g. secretEnv names). */
export function redact(value: unknown, key = ''): unknown {
  if (Array.isArray(value)) return value.map((v) => redact(v, key));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value as Record<string, unknown>).map(([k, v]) => {
      if (SECRET_KEY.test(key) && k === 'value') return [k, '[redacted]'];
      if (SECRET_KEY.test(k) && (typeof v === 'string' || typeof v === 'number')) return [k, '[redacted]'];
      return [k, redact(v, SECRET_KEY.test(k) ? k : key)];
    }));
  }
  return value;
}

async function moveHead(store: Store, seq: number, hash: string) {
  await store.mutate<Head>('audit', HEAD, (head) => (!head || head.last < seq ? { id: HEAD, last: seq, hash } : undefined));
}

/**
 * This process's appends, one after another (per store): the requests one API process serves at the same time never
 * race each other for the next entry (25 concurrent appends cost 25 × 24 / 2 lost races before); only appends of
 * other processes can, and the walk below settles those.
 */
const appending = new WeakMap<Store, Promise<unknown>>();

export function appendAudit(store: Store, fields: AuditFields): Promise<AuditEntry> {
  const mine = (appending.get(store) ?? Promise.resolve()).then(() => append(store, fields));
  appending.set(store, mine.catch(() => undefined));
  return mine;
}

async function append(store: Store, fields: AuditFields): Promise<AuditEntry> {
  const head = await store.get<Head>('audit', HEAD);
  let seq = (head?.last ?? 0) + 1;
  let prevHash = head?.hash ?? GENESIS;
  // Walks forward past entries others won, so n concurrent writers cost O(n) attempts, not a retry storm on the head.
  for (let attempt = 0; attempt < 1_000; attempt++) {
    const entry: AuditEntry = { ...fields, seq, prevHash, hash: hashEntry({ ...fields, seq, prevHash }) };
    const { seq: _n, ...rest } = entry;
    const created = await store.create<Omit<StoredEntry, 'seq'>>('audit', { id: entryId(seq), n: seq, ...rest });
    if (created) {
      await moveHead(store, seq, entry.hash);
      return entry;
    }
    const winner = await store.get<StoredEntry>('audit', entryId(seq));
    if (!winner) continue;
    prevHash = winner.hash;
    seq++;
  }
  throw new Error('the audit log is too contended to append to');
}

/**
 * Audits without failing the caller's mutation when the store hiccups; the failure is logged loudly instead, since
 * the change itself already happened.
 */
export async function audit(store: Store, fields: AuditFields): Promise<void> {
  try {
    await appendAudit(store, fields);
  } catch (err) {
    log.error({ err, operation: fields.operation, principal: fields.principal }, 'could not append to the audit log');
  }
}

export interface AuditFilter {
  principal?: string | null;
  operation?: string | null;
  outcome?: Outcome | null;
}

export async function auditHead(store: Store): Promise<{ last: number; hash: string }> {
  const head = await store.get<Head>('audit', HEAD);
  return { last: head?.last ?? 0, hash: head?.hash ?? GENESIS };
}

const strip = ({ id: _id, n, seq: _version, ...rest }: StoredEntry): AuditEntry => ({ ...rest, seq: n });

/**
 * Newest first, `after` is the seq of the previous page's last entry. Reads entries by key going down from the head
 * (no scan); a filter looks at most 5,000 entries per page.
 */
export async function listAudit(store: Store, filter: AuditFilter, first: number, after?: string | null) {
  const size = Math.max(1, Math.min(first, 500));
  let next = after ? Number(after) - 1 : (await auditHead(store)).last;
  if (!Number.isInteger(next) || next < 0) next = 0;
  const nodes: AuditEntry[] = [];
  let looked = 0;
  while (next >= 1 && nodes.length < size && looked < 5_000) {
    const batch = Array.from({ length: Math.min(50, next) }, (_, i) => next - i);
    const items = await Promise.all(batch.map((seq) => store.get<StoredEntry>('audit', entryId(seq))));
    looked += batch.length;
    for (const [i, item] of items.entries()) {
      next = batch[i] - 1;
      // A removed entry shows as a gap here; `fz audit verify` reports it.
      if (!item) continue;
      if (filter.principal && item.principal !== filter.principal) continue;
      if (filter.operation && item.operation !== filter.operation) continue;
      if (filter.outcome && item.outcome !== filter.outcome) continue;
      nodes.push(strip(item));
      if (nodes.length === size) break;
    }
  }
  const last = nodes.at(-1);
  return { nodes, pageInfo: { endCursor: last ? String(last.seq) : null, hasNextPage: next >= 1 } };
}

export interface ChainProblem {
  seq: number;
  problem: string;
}

/** Checks a whole chain (any order) against its head: every problem found, none means intact. */
export function verifyChain(entries: AuditEntry[], head: { last: number; hash: string }): ChainProblem[] {
  const bySeq = new Map(entries.map((e) => [e.seq, e]));
  const problems: ChainProblem[] = [];
  // Entries past the head are appends whose head move has not happened yet (or crashed): checked like the rest.
  const last = Math.max(head.last, ...bySeq.keys());
  let prevHash = GENESIS;
  for (let seq = 1; seq <= last; seq++) {
    const e = bySeq.get(seq);
    if (!e) {
      problems.push({ seq, problem: 'missing: the entry was removed' });
      prevHash = '';
      continue;
    }
    if (hashEntry(e) !== e.hash) problems.push({ seq, problem: 'edited: its fields do not match its hash' });
    else if (prevHash && e.prevHash !== prevHash) problems.push({ seq, problem: 'the chain is broken before it: its prevHash is not the hash of the entry before' });
    prevHash = e.hash;
  }
  if (head.last > 0 && bySeq.has(head.last) && bySeq.get(head.last)!.hash !== head.hash) problems.push({ seq: head.last, problem: 'the head names another hash for this entry' });
  return problems;
}
