/**
 * Ark, the base part: hosts, the instances placed on them, and what their runners report. The only module other
 * parts may import (test/unit/parts.test.ts); Ark imports no other part and reports upward through `arkHooks`.
 * Ark alone writes the tables `hosts`, `instances`, `containers`, `logs` and `claims`.
 */
export { arkHooks, type ArkListeners } from './hooks';
export { arkSchema } from './schema';
export { listCertificates, recordServerCertificate, type TrackedCertificate } from './certificates';
export {
  forgetHost, getHost, listHostLiveness, listHosts, markDown, mustGetHost, recordProbe, recordSocketAnswer, revokeHost, setCordoned, setHostExclusive, watchingSince,
  type Host, type HostLiveness, type HostStatus,
} from './hosts';
export {
  announcePendingNetwork, checkPlacement, containerName, forgetLostContainers, getInstance, HOST_DESIRED_CHANGED, hostTopic, instanceId, instancesOfHost, instancesOfRelease, listInstances,
  migrateInstance, placeInstances, removeInstance, respecInstance, specHash,
  type ContainerSpec, type Instance, type PlacementConstraints, type RenderedSpec, type RenderSpec, type UnplacedInstance,
} from './instances';
export { cadenceFor, silenceFor, type Cadence } from './cadence';
export { pinImage, type PinnedImage } from './images';
export { checkLedger, type LedgerDrift } from './ledger';
export { followLogs, logTailDelivered, pendingLogTails, unfollowLogs, type LogTail } from './logtail';
export {
  containersOfHost, containersOfRelease, generationStatus, getContainer, isFailing, isServing, listContainers,
  type ContainerRecord, type StatusChange,
} from './containers';
