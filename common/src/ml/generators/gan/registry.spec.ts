import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';

import { selectBackend } from '../../backend/index.js';
import { encodeWeights, variablesToWeights } from '../../weights/index.js';

import {
  buildGenerator,
  ganArchitecture,
  ganConfig,
  loadGenerator,
  registerGanArchitecture,
  registeredGanArchitectures,
} from './registry.js';
import { buildTinyDcgan, TINY_DCGAN_TRAINING } from './testing/tiny-dcgan.js';

describe('GAN architecture registry', () => {
  before(() => selectBackend({ prefer: 'wasm', logger: () => {} }));

  it('registers with checks, lists, and explains unknown names', () => {
    assert.ok(registeredGanArchitectures().includes('tiny-dcgan'));
    assert.equal(ganArchitecture('tiny-dcgan').name, 'tiny-dcgan');
    assert.throws(
      () => ganArchitecture('nope'),
      /unknown GAN architecture 'nope' \(registered: .*tiny-dcgan/,
    );
    const profiles = { paper: {}, cpu: {}, tiny: {} };
    const entry = {
      build: buildTinyDcgan as never,
      profiles,
      loss: 'wgan-gp' as const,
      options: TINY_DCGAN_TRAINING,
    };
    assert.throws(() => registerGanArchitecture('Bad Name', entry), /bad name/);
    assert.throws(() => registerGanArchitecture('tiny-dcgan', entry), /already registered by another module/);
    assert.throws(
      () => registerGanArchitecture('no-tiny', { ...entry, profiles: { paper: {}, cpu: {} } as never }),
      /has no 'tiny' profile/,
    );
    assert.throws(
      () => registerGanArchitecture('bad-loss', { ...entry, loss: 'hinge' as never }),
      /unknown loss/,
    );
  });

  it('picks a config (explicit, else a profile, default cpu) and rebuilds generators from weights blobs', () => {
    assert.deepEqual(ganConfig('tiny-dcgan', { profile: 'tiny' }), { resolution: 8, latentDim: 8, width: 8 });
    assert.equal(ganConfig('tiny-dcgan').resolution, 32);
    assert.deepEqual(ganConfig('tiny-dcgan', { config: { resolution: 4 } }), { resolution: 4 });
    const config = { resolution: 8, latentDim: 4, width: 4 };
    const generator = buildGenerator({ name: 'tiny-dcgan', config }, 2);
    const blob = encodeWeights(variablesToWeights(generator.variables), {
      architecture: generator.architecture,
    });
    const loaded = loadGenerator(blob);
    assert.deepEqual(loaded.architecture, { name: 'tiny-dcgan', config });
    assert.deepEqual(variablesToWeights(loaded.variables), variablesToWeights(generator.variables));
    loaded.dispose();
    const wrong = encodeWeights(variablesToWeights(generator.variables), {
      architecture: { name: 'tiny-dcgan', config: { ...config, width: 8 } },
    });
    assert.throws(() => loadGenerator(wrong, 'site upload'), /site upload: assignWeights/);
    generator.dispose();
  });
});
