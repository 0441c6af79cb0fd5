// The site <-> coordinator wire protocol: typed socket.io event map, payload and ack schemas, validation helper.
export * from './errors.js';
export * from './events.js';
export * from './limits.js';
export * from './schemas.js';
export * from './validated.js';
export * from './version.js';
export * from './job-payloads.js';
