import { z } from 'zod';

export const StartAuditBody = z.strictObject({
  studyId: z.string().trim().min(1).max(64),
  /** added to each site's reference (its train→held-out maxima) to make its threshold */
  margin: z.number().min(0).max(1),
});
export type StartAuditBody = z.infer<typeof StartAuditBody>;

export const AuditDecisionBody = z.strictObject({
  approve: z.boolean(),
  comment: z.string().trim().max(2000).optional(),
});
export type AuditDecisionBody = z.infer<typeof AuditDecisionBody>;
