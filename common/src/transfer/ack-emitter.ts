// The transport a transfer needs: send one event, wait for its ack or a timeout. A socket.io socket on either side
// provides it through socketAckEmitter; tests can wrap one to drop, delay or corrupt messages.

export interface AckEmitter {
  /**
   * Emits `event` with one payload and resolves with the peer's ack. Rejects with TransportError when no ack came
   * within `timeoutMs` ('timeout') or the connection is gone ('disconnected').
   */
  emitWithAck(event: string, payload: unknown, timeoutMs: number): Promise<unknown>;
}

export class TransportError extends Error {
  override readonly name = 'TransportError';
  constructor(
    readonly kind: 'timeout' | 'disconnected',
    message: string,
  ) {
    super(message);
  }
}

/** The parts of a socket.io Socket (server or client side) the adapter uses. */
export interface AckSocket {
  readonly connected: boolean;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  timeout(ms: number): { emit(event: any, ...args: any[]): unknown };
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  on(event: 'disconnect', listener: (...args: any[]) => void): unknown;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  off(event: 'disconnect', listener: (...args: any[]) => void): unknown;
}

export interface SocketAckEmitter extends AckEmitter {
  /** stop listening to the socket; pending emits fail as disconnected */
  dispose(): void;
}

/**
 * Adapts a socket.io socket. Refuses to emit while disconnected (the client would otherwise buffer the packet and
 * send it, stale, after reconnecting) and fails every pending ack at once when the socket disconnects, instead of
 * letting each wait for its timeout.
 */
export function socketAckEmitter(socket: AckSocket): SocketAckEmitter {
  const pending = new Set<(err: Error) => void>();
  const onDisconnect = (reason?: unknown) => {
    const err = new TransportError('disconnected', `socket disconnected (${String(reason ?? 'unknown')})`);
    for (const fail of [...pending]) fail(err);
  };
  socket.on('disconnect', onDisconnect);
  return {
    emitWithAck(event, payload, timeoutMs) {
      if (!socket.connected) {
        return Promise.reject(
          new TransportError('disconnected', `cannot send ${event}: socket is not connected`),
        );
      }
      return new Promise((resolve, reject) => {
        const fail = (err: Error) => {
          if (pending.delete(fail)) reject(err);
        };
        pending.add(fail);
        socket.timeout(timeoutMs).emit(event, payload, (err: Error | null, reply: unknown) => {
          if (!pending.delete(fail)) return; // already failed by a disconnect
          if (!err) resolve(reply);
          else if (!socket.connected) reject(new TransportError('disconnected', `${event}: ${err.message}`));
          else reject(new TransportError('timeout', `${event}: no ack within ${timeoutMs} ms`));
        });
      });
    },
    dispose() {
      socket.off('disconnect', onDisconnect);
      onDisconnect('disposed');
    },
  };
}
