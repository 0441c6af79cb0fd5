// The site agent: enrolment, the daemon and its job handler registry.
export * from './capabilities.js';
export * from './enroll.js';
export * from './job-handlers.js';
export * from './job-store.js';
export * from './logger.js';
export * from './rate-limiter.js';
export * from './site-agent.js';
export * from './private-slices.js';
export * from './site-state.js';
export * from './version.js';
export * from './handlers/index.js';
