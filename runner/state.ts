/** The runner's registration, kept on disk so that a restart does not register the host again. */
import fs from 'node:fs';
import path from 'node:path';

export interface RunnerState {
  hostId: string;
  hostToken: string;
  /** The API the host registered with; a saved registration is only valid there. */
  apiUrl: string;
  /**
   * With the platform CA: the host's key (made here, never sent), its client certificate and the CA's certificate,
   * PEM; in this one file so that a renewal replaces key and certificate together.
   */
  tls?: { key: string; cert: string; ca: string } | null;
}

export const stateFile = (stateDir: string, name: string) => path.join(stateDir, `${name}.json`);

export function loadState(file: string): RunnerState | null {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  const state = JSON.parse(text) as Partial<RunnerState>;
  if (!state.hostId || !state.hostToken || !state.apiUrl) throw new Error(`${file} is not a runner state file`);
  return state as RunnerState;
}

/** Owner-only (0600): the file holds the host token (and the host's key). Written to a temp file and renamed so it is never half-written. */
export function saveState(file: string, state: RunnerState): void {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.rmSync(tmp, { force: true }); // a leftover would keep its old mode
  fs.writeFileSync(tmp, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
  fs.renameSync(tmp, file);
}
