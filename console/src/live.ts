import { useEffect, useRef } from 'react';
import { useSubscription, type AnyVariables } from 'urql';
import type { DocumentNode } from 'graphql';

/**
 * Keeps a page live: every message of the subscription re-runs the page's query (coalesced to one refetch per
 * animation frame), so what the page shows is always what the API answers, not a client-side patch of it.
 */
export function useLive(subscription: DocumentNode, variables: AnyVariables, refetch: () => void, pause = false) {
  const pending = useRef(false);
  const [result] = useSubscription({ query: subscription, variables, pause });
  useEffect(() => {
    if (!result.data || pending.current) return;
    pending.current = true;
    requestAnimationFrame(() => { pending.current = false; refetch(); });
  }, [result.data]);
  return result.error;
}
