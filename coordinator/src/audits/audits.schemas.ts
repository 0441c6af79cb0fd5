import { z } from 'zod';

export const StartAuditBody = z.strictObject({
  /** a generator study in state 'done' (studies are uuids) */
  studyId: z.uuid(),
  /** added to each site's reference (its train→held-out maxima) to make its threshold */
  margin: z.number().min(0).max(1),
});
export type StartAuditBody = z.infer<typeof StartAuditBody>;

export const AuditDecisionBody = z.strictObject({
  approve: z.boolean(),
  comment: z.string().trim().max(2000).optional(),
});
export type AuditDecisionBody = z.infer<typeof AuditDecisionBody>;
