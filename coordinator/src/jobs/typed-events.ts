import { EventEmitter } from 'node:events';

/**
 * A typed, synchronous in-process event emitter: listeners run in `emit`, a throwing listener does not stop the
 * others (it goes to the `onError` handler, or is rethrown asynchronously when there is none).
 */
export class TypedEvents<M extends object> {
  private readonly emitter = new EventEmitter();
  private errorHandler?: (error: unknown, event: keyof M) => void;

  constructor() {
    this.emitter.setMaxListeners(100);
  }

  /** Subscribes; returns the function that unsubscribes. */
  on<K extends keyof M & string>(event: K, listener: (payload: M[K]) => void): () => void {
    this.emitter.on(event, listener);
    return () => this.emitter.off(event, listener);
  }

  once<K extends keyof M & string>(event: K, listener: (payload: M[K]) => void): () => void {
    this.emitter.once(event, listener);
    return () => this.emitter.off(event, listener);
  }

  onError(handler: (error: unknown, event: keyof M) => void): void {
    this.errorHandler = handler;
  }

  emit<K extends keyof M & string>(event: K, payload: M[K]): void {
    for (const listener of this.emitter.listeners(event) as ((p: M[K]) => void)[]) {
      try {
        listener(payload);
      } catch (error) {
        if (this.errorHandler) this.errorHandler(error, event);
        else
          queueMicrotask(() => {
            throw error;
          });
      }
    }
  }

  listenerCount(event: keyof M & string): number {
    return this.emitter.listenerCount(event);
  }
}
