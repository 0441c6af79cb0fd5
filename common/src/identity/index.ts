// Site identity: key pairs, enrolment proofs, per-handshake assertions and their verification.
export * from './auth-error.js';
export * from './clock.js';
export * from './enrollment-proof.js';
export * from './replay-cache.js';
export * from './site-assertion.js';
export * from './site-key.js';
