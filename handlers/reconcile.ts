import { store } from '../lib/store';
import { reconcileReleases } from '../subgraphs/panama/reconcile';

/** The periodic tick (a schedule in AWS; the dev stack invokes it itself, serverless-offline has no schedules). */
export const handler = () => reconcileReleases(store());
