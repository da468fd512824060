/**
 * How an effect travels up the parts (DESIGN.md: Ark at the base, Panama on it, Butler watching both). A lower part
 * declares what it reports and calls `emit`; an upper part registers its listeners when it loads. The lower part
 * never imports the upper one, so the parts stay a DAG. Listeners run in registration order and are awaited: what
 * they write is written before the lower part answers its caller.
 */
export type Listeners = Record<string, (...args: never[]) => Promise<unknown>>;

export class Hooks<T extends Listeners> {
  private readonly listeners: Partial<T>[] = [];

  /** Registers listeners; returns the function that removes them again. */
  on(listener: Partial<T>): () => void {
    this.listeners.push(listener);
    return () => {
      const at = this.listeners.indexOf(listener);
      if (at >= 0) this.listeners.splice(at, 1);
    };
  }

  async emit<K extends keyof T>(name: K, ...args: Parameters<T[K]>): Promise<void> {
    for (const listener of [...this.listeners]) await listener[name]?.(...args);
  }
}
