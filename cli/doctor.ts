/** `fz doctor`: the books of every host against the instances placed on it, and their repair. */
import { CliError, type Api } from './api';

interface Drift {
  host: { name: string };
  kind: string;
  message: string;
  repaired: boolean;
}

const FIELDS = '{ host { name } kind instanceId message repaired }';

/** Prints one line per drift; true when the books hold (or every drifted host was repaired). */
export async function doctor(api: Api, repair: boolean, out: (line: string) => void): Promise<boolean> {
  const res = await api.request<{ ledgerDrift?: Drift[]; repairLedger?: Drift[] }>(repair ? `mutation { repairLedger ${FIELDS} }` : `{ ledgerDrift ${FIELDS} }`);
  if (res.errors?.length || !res.data) throw new CliError(res.errors?.map((e) => e.message).join('; ') ?? 'the API returned no data');
  const drift = (repair ? res.data.repairLedger : res.data.ledgerDrift) ?? [];
  if (!drift.length) {
    out('ledger: every host\'s allocated resources equal the sum of its placed instances');
    return true;
  }
  for (const d of drift) out(`${d.repaired ? 'repaired' : 'drift'}  ${d.host.name}  ${d.kind}  ${d.message}`);
  if (!repair) out(`${drift.length} drift(s); fz doctor --repair rewrites the hosts' books from their instances`);
  else if (drift.some((d) => !d.repaired)) out('some hosts changed while being repaired; run fz doctor again');
  return repair && drift.every((d) => d.repaired);
}
