// Looks for byte sequences in files: every fixed-length window of a set of "needles" (canary patterns, windows of
// private slices and voxels) at every offset of every file under a folder. Used to prove that private bytes never
// reach the coordinator (and, as a control, that they are found where they do live).
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';

export interface ScanHit {
  file: string;
  offset: number;
  needle: string;
}

export class ByteScanner {
  private readonly needles = new Map<string, string>();

  constructor(readonly windowBytes = 32) {}

  get size(): number {
    return this.needles.size;
  }

  /** Adds one window (exactly windowBytes long) under a label. */
  add(window: Uint8Array, label: string): void {
    if (window.length !== this.windowBytes) throw new Error(`a window is ${this.windowBytes} bytes`);
    this.needles.set(Buffer.from(window).toString('latin1'), label);
  }

  /**
   * Adds windows of `bytes` every `stride` bytes, skipping low-variety windows (runs of background zeros or of one
   * value occur in any file and prove nothing): at least `minDistinct` different byte values.
   */
  addWindows(bytes: Uint8Array, label: string, stride = 1, minDistinct = 10): number {
    let added = 0;
    for (let at = 0; at + this.windowBytes <= bytes.length; at += stride) {
      const window = bytes.subarray(at, at + this.windowBytes);
      if (new Set(window).size < minDistinct) continue;
      this.add(window, `${label}@${at}`);
      added++;
    }
    return added;
  }

  scanBuffer(bytes: Uint8Array, file: string, limit = 5): ScanHit[] {
    const hits: ScanHit[] = [];
    const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
    for (let at = 0; at + this.windowBytes <= text.length; at++) {
      const label = this.needles.get(text.slice(at, at + this.windowBytes));
      if (label !== undefined) {
        hits.push({ file, offset: at, needle: label });
        if (hits.length >= limit) break;
      }
    }
    return hits;
  }

  /** Every regular file under `root` (or `root` itself). */
  async scanTree(root: string, limitPerFile = 5): Promise<{ files: number; bytes: number; hits: ScanHit[] }> {
    const result = { files: 0, bytes: 0, hits: [] as ScanHit[] };
    const visit = async (file: string) => {
      const info = await stat(file).catch(() => undefined);
      if (!info) return;
      if (info.isDirectory()) {
        for (const name of await readdir(file)) await visit(path.join(file, name));
        return;
      }
      if (!info.isFile()) return;
      const bytes = await readFile(file);
      result.files++;
      result.bytes += bytes.length;
      result.hits.push(...this.scanBuffer(bytes, file, limitPerFile));
    };
    await visit(root);
    return result;
  }
}
