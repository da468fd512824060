import pino from 'pino';

/** The one logger: structured JSON lines on stderr. Never pass secrets (tokens, passwords) as fields. */
export const log = pino({
  level: process.env.LOG_LEVEL ?? (process.env.NODE_ENV === 'test' ? 'warn' : 'info'),
  base: { service: process.env.FZ_SERVICE ?? 'fangzhou' },
  redact: { paths: ['token', 'hostToken', 'joinToken', 'authorization', '*.token', '*.hostToken', '*.joinToken', '*.authorization'], censor: '[redacted]' },
}, pino.destination(2));
