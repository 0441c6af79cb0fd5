// Fixtures shared by the protocol specs.
import { PROTOCOL_VERSION } from './version.js';

export const goodHello = {
  protocolVersion: PROTOCOL_VERSION,
  agentVersion: '0.1.0',
  capabilities: {
    backends: ['tfjs-node', 'wasm'],
    cores: 8,
    memoryMb: 32_000,
    jobKinds: ['sample', 'audit'],
  },
  dataset: {
    cases: 40,
    trainCases: 32,
    testCases: 8,
    slices: 4000,
    trainSlices: 3200,
    testSlices: 800,
    preset: 'paper',
  },
};
