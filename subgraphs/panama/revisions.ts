import type { Store } from '../../lib/store';
import type { Release, Revision } from './releases';

/**
 * A release's revisions, each an item of its own (table `revisions`, queried by release in revision order), so a
 * release's history never grows its item towards the store's item size limit.
 *
 * Writing stays one conditional write of the release: its newest revision lives in the release item
 * (`lastRevision`), and a change first stores the revision it is about to displace as an item, then writes the
 * release at the version it read. The stored item is a copy of what the release item holds, so whoever writes it,
 * and however often, writes the same thing; a crash between the two writes leaves that copy and the release as it
 * was. Every revision below the newest is thus an item before the release stops holding it.
 *
 * Releases written before revisions were items hold all of them in `revisions`: they are read from there, and stored
 * as items by the first change that drops that list.
 */
export interface RevisionItem extends Revision {
  /** `<releaseId>#<revision>`. */
  id: string;
  releaseId: string;
}

const itemId = (releaseId: string, revision: number) => `${releaseId}#${revision}`;

/** The newest revision of a release. */
export const newestRevision = (r: Pick<Release, 'lastRevision' | 'revisions'>): Revision | undefined => r.lastRevision ?? r.revisions?.at(-1);

/** The revisions the release item itself holds: its newest, and all of them on a release written before items. */
const heldInItem = (r: Pick<Release, 'lastRevision' | 'revisions'>): Revision[] => [...(r.revisions ?? []), ...(r.lastRevision ? [r.lastRevision] : [])];

const toItem = (releaseId: string, revision: Revision): RevisionItem => ({ ...revision, id: itemId(releaseId, revision.revision), releaseId });
const fromItem = ({ id: _id, releaseId: _r, seq: _s, ...revision }: RevisionItem & { seq?: number }): Revision => revision;

/**
 * Stores as items the revisions this release item holds, before a write that replaces its newest (or drops the old
 * list). Idempotent: an item already there holds the same copy.
 */
export async function keepRevisions(store: Store, release: Pick<Release, 'id' | 'lastRevision' | 'revisions'>): Promise<void> {
  for (const revision of heldInItem(release)) await store.create('revisions', toItem(release.id, revision));
}

/** The release as written with a new newest revision; the old list of a release written before items goes. */
export function withNewRevision<R extends Partial<Pick<Release, 'revisions'>>>(release: R, revision: Revision): Omit<R, 'revisions'> & Pick<Release, 'revision' | 'lastRevision'> {
  const { revisions: _old, ...rest } = release;
  return { ...rest, revision: revision.revision, lastRevision: revision };
}

/** Oldest first: up to `first` revisions after revision number `after` (all of them without `first`). */
export async function listRevisions(store: Store, release: Release, first?: number | null, after?: number | null): Promise<Revision[]> {
  const from = after ?? 0;
  const limit = first === undefined || first === null ? Number.MAX_SAFE_INTEGER : Math.max(0, first);
  const stored = (await store.queryRange<RevisionItem>('revisions', 'byRelease', release.id, { above: from, limit })).map(fromItem);
  const byNumber = new Map<number, Revision>();
  // An item above the release's counter cannot be written by keepRevisions; should one appear, it is not history.
  for (const r of [...stored, ...heldInItem(release)]) if (r.revision > from && r.revision <= release.revision) byNumber.set(r.revision, r);
  return [...byNumber.values()].sort((a, b) => a.revision - b.revision).slice(0, limit);
}

/** One revision of the release, or undefined when it has none of that number. */
export async function getRevision(store: Store, release: Release, revision: number): Promise<Revision | undefined> {
  if (!Number.isInteger(revision) || revision < 1 || revision > release.revision) return undefined;
  const held = heldInItem(release).find((r) => r.revision === revision);
  if (held) return held;
  const item = await store.get<RevisionItem>('revisions', itemId(release.id, revision));
  return item && fromItem(item);
}

/** Forgets the revisions of a release that is gone. */
export async function dropRevisions(store: Store, releaseId: string): Promise<void> {
  for (;;) {
    const items = await store.queryRange<RevisionItem>('revisions', 'byRelease', releaseId, { limit: 100 });
    if (!items.length) return;
    for (const item of items) await store.remove('revisions', item.id);
  }
}
