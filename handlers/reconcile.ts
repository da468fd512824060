import { store } from '../lib/store';
import { panama } from '../subgraphs';

/** The periodic tick (a schedule in AWS; the dev stack invokes it itself, serverless-offline has no schedules). */
export const handler = () => panama.reconcileReleases(store());
