import { useEffect, useRef } from 'react';
import { useSubscription, type AnyVariables } from 'urql';
import type { DocumentNode } from 'graphql';

/**
 * Keeps a page live: every message of the subscription re-runs the page's query (coalesced to one refetch per
 * animation frame), so what the page shows is always what the API answers, not a client-side patch of it. A page
 * may also show each message itself (`onMessage`) until that answer comes, so a state that lasted less than a
 * refetch (a container killed and restarted at once) is still seen.
 */
export function useLive<T = any>(subscription: DocumentNode, variables: AnyVariables, refetch: () => void, pause = false, onMessage?: (data: T) => void) {
  const pending = useRef(false);
  const [result] = useSubscription<T>({ query: subscription, variables, pause });
  useEffect(() => {
    if (result.data) onMessage?.(result.data);
    if (!result.data || pending.current) return;
    pending.current = true;
    requestAnimationFrame(() => { pending.current = false; refetch(); });
  }, [result.data]);
  return result.error;
}
