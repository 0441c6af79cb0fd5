import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Inject, Injectable, Logger, type OnModuleInit } from '@nestjs/common';
import { calculateJwkThumbprint, exportJWK, type JWK } from 'jose';
import { COORDINATOR_CONFIG, type CoordinatorConfig } from '../config/coordinator-config.js';

export const COORDINATOR_KEY_FILE = 'coordinator-ed25519.pem';

/**
 * The coordinator's own Ed25519 signing key (user tokens, and later anything the coordinator signs). Created on
 * first start as `<dataDir>/coordinator-ed25519.pem` (PKCS#8, file mode 0600, directory 0700) and reused after.
 * A key file readable by group or others is refused, like ssh does.
 */
@Injectable()
export class CoordinatorKeyService implements OnModuleInit {
  private readonly logger = new Logger(CoordinatorKeyService.name);
  private keys?: { privateKey: KeyObject; publicKey: KeyObject; publicJwk: JWK; kid: string };

  constructor(@Inject(COORDINATOR_CONFIG) private readonly config: CoordinatorConfig) {}

  get keyFile(): string {
    return path.join(this.config.dataDir, COORDINATOR_KEY_FILE);
  }

  async onModuleInit(): Promise<void> {
    await this.load();
  }

  async load(): Promise<void> {
    if (this.keys) return;
    const pem = (await this.readExisting()) ?? (await this.create());
    const privateKey = createPrivateKey(pem);
    if (privateKey.asymmetricKeyType !== 'ed25519') {
      throw new Error(`${this.keyFile} is not an Ed25519 private key (${privateKey.asymmetricKeyType})`);
    }
    const publicKey = createPublicKey(privateKey);
    const publicJwk = await exportJWK(publicKey);
    const kid = await calculateJwkThumbprint(publicJwk, 'sha256');
    this.keys = { privateKey, publicKey, publicJwk: { ...publicJwk, kid, alg: 'EdDSA', use: 'sig' }, kid };
  }

  get privateKey(): KeyObject {
    return this.loaded().privateKey;
  }

  get publicKey(): KeyObject {
    return this.loaded().publicKey;
  }

  /** The public key as a JWK (with `kid`, `alg`, `use`). */
  get publicJwk(): JWK {
    return this.loaded().publicJwk;
  }

  /** RFC 7638 thumbprint of the public key. */
  get kid(): string {
    return this.loaded().kid;
  }

  private loaded() {
    if (!this.keys) throw new Error('coordinator key not loaded yet');
    return this.keys;
  }

  private async readExisting(): Promise<string | undefined> {
    let mode: number;
    try {
      mode = (await stat(this.keyFile)).mode;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
    if (process.platform !== 'win32' && (mode & 0o077) !== 0) {
      throw new Error(
        `${this.keyFile} is accessible by other users (mode ${(mode & 0o777).toString(8)}); ` +
          `run: chmod 600 ${this.keyFile}`,
      );
    }
    return readFile(this.keyFile, 'utf8');
  }

  private async create(): Promise<string> {
    await mkdir(this.config.dataDir, { recursive: true, mode: 0o700 });
    const { privateKey } = generateKeyPairSync('ed25519');
    const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    try {
      // 'wx': never overwrite a key another process created in the meantime
      await writeFile(this.keyFile, pem, { mode: 0o600, flag: 'wx' });
      await chmod(this.keyFile, 0o600); // whatever the umask
      this.logger.log(`created the coordinator signing key ${this.keyFile}`);
      return pem;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      return (await this.readExisting()) as string;
    }
  }
}
