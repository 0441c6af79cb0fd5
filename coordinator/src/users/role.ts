/** The human roles. admin: manages sites, users, studies and releases; auditor: reads audits and approves
 * releases; researcher: lists and downloads released data sets. */
export const ROLES = ['admin', 'auditor', 'researcher'] as const;
export type Role = (typeof ROLES)[number];

export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && (ROLES as readonly string[]).includes(value);
}
