import { verifyChain, type AuditEntry } from '../lib/audit';
import { CliError, type Api } from './api';

/** `fz audit verify` and `fz audit export`: the whole chain, read page by page through the API (admin key). */
const PAGE = `query($after: String) {
  auditHead { last hash }
  auditLog(first: 500, after: $after) {
    nodes { seq at principal role operation input outcome code requestId prevHash hash }
    pageInfo { endCursor hasNextPage }
  }
}`;

interface PageData {
  auditHead: { last: number; hash: string };
  auditLog: { nodes: AuditEntry[]; pageInfo: { endCursor: string | null; hasNextPage: boolean } };
}

export async function readChain(api: Api): Promise<{ entries: AuditEntry[]; head: { last: number; hash: string } }> {
  const entries: AuditEntry[] = [];
  let head: PageData['auditHead'] | undefined;
  let after: string | null = null;
  do {
    const res: { data?: PageData; errors?: { message: string }[] } = await api.request<PageData>(PAGE, { after });
    if (res.errors?.length || !res.data) throw new CliError(res.errors?.map((e) => e.message).join('; ') ?? 'the API returned no data');
    // The head of the first page: entries appended while reading are past it and checked as well.
    head ??= res.data.auditHead;
    entries.push(...res.data.auditLog.nodes);
    after = res.data.auditLog.pageInfo.hasNextPage ? res.data.auditLog.pageInfo.endCursor : null;
  } while (after);
  return { entries: entries.sort((a, b) => a.seq - b.seq), head: head! };
}

/** Prints every problem; returns whether the chain is intact. */
export async function verify(api: Api, out: (line: string) => void, err: (line: string) => void): Promise<boolean> {
  const { entries, head } = await readChain(api);
  const problems = verifyChain(entries, head);
  for (const p of problems) err(`entry ${p.seq}: ${p.problem}`);
  if (problems.length) return false;
  out(`audit log intact: ${entries.length} entries, last ${head.last}, head hash ${head.hash.slice(0, 16)}…`);
  return true;
}

/** JSON lines, oldest first: one entry a line, with its hashes, so the export can be verified on its own. */
export async function exportLines(api: Api, out: (line: string) => void): Promise<void> {
  for (const e of (await readChain(api)).entries) out(JSON.stringify(e));
}
