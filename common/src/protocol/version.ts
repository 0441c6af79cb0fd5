// The wire protocol's version. Bump it on any incompatible change to an event or payload in this folder; a site and
// a coordinator that disagree refuse each other at `site:hello` with code 'protocol_mismatch'.
export const PROTOCOL_VERSION = 1;
