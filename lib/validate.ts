import { badInput } from './errors';

/** Checks at the edge; each failure names the field and says what would be accepted. */

/** A value as an error message may show it: quoted, and cut short so that a long one is never echoed whole. */
export const shown = (value: string, max = 60) => JSON.stringify(value.length > max ? `${value.slice(0, max - 1)}…` : value);

const DNS_LABEL = /^[a-z]([a-z0-9-]*[a-z0-9])?$/;

export function dnsLabel(value: string, field: string, max = 40): string {
  if (value.length > max || !DNS_LABEL.test(value)) {
    throw badInput(`${field} ${shown(value)} must be 1-${max} lowercase letters, digits or '-', start with a letter and not end with '-'`, field);
  }
  return value;
}

export function intInRange(value: number, field: string, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw badInput(`${field} must be an integer from ${min} to ${max}, got ${value}`, field);
  }
  return value;
}

const LABEL_KEY = /^[A-Za-z0-9]([A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?$/;
const LABEL_VALUE = /^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$/;

export interface Label {
  key: string;
  value: string;
}

export function labels(list: Label[] | null | undefined, field: string): Label[] {
  const out = list ?? [];
  const seen = new Set<string>();
  out.forEach(({ key, value }, i) => {
    if (!LABEL_KEY.test(key)) throw badInput(`${field}[${i}].key ${shown(key)} must be 1-63 letters, digits, '.', '_', '/' or '-', starting and ending with a letter or digit`, `${field}[${i}].key`);
    if (!LABEL_VALUE.test(value)) throw badInput(`${field}[${i}].value ${shown(value)} for key ${shown(key)} must be at most 63 letters, digits, '.', '_' or '-', starting and ending with a letter or digit`, `${field}[${i}].value`);
    if (seen.has(key)) throw badInput(`${field} has the key ${shown(key)} twice`, field);
    seen.add(key);
  });
  return out.map(({ key, value }) => ({ key, value }));
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export function envVars(list: { name: string; value: string }[] | null | undefined, field: string) {
  const out = list ?? [];
  out.forEach(({ name }, i) => {
    if (!ENV_NAME.test(name)) throw badInput(`${field}[${i}].name ${shown(name)} is not a valid environment variable name (letters, digits, '_'; not starting with a digit)`, `${field}[${i}].name`);
  });
  return out.map(({ name, value }) => ({ name, value }));
}

export interface Resources {
  cpuMillis: number;
  memoryMb: number;
}

export function resources(value: Resources, field: string): Resources {
  return {
    cpuMillis: intInRange(value.cpuMillis, `${field}.cpuMillis`, 1, 1_000_000),
    memoryMb: intInRange(value.memoryMb, `${field}.memoryMb`, 6, 4_194_304),
  };
}

export const badAddress = (address: string) =>
  badInput(`address ${shown(address)} must be an IP address or host name`, 'address');
