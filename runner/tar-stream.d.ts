// tar-stream 2.x ships no types (and @types/tar-stream describes 3.x); this is the part the runner uses.
declare module 'tar-stream' {
  import type { Readable } from 'node:stream';

  export interface Headers {
    name: string;
    mode?: number;
    size?: number;
    mtime?: Date;
  }

  export interface Pack extends Readable {
    entry(headers: Headers, content: string | Buffer, callback?: (err?: Error) => void): void;
    finalize(): void;
  }

  export function pack(): Pack;
}
