import { modelProfileSchema, segmenterModelSchema } from '@fedsynth/common/protocol/index';
import { z } from 'zod';

const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, 'a sha256 is 64 lowercase hex digits');
const steps = z.number().int().min(1).max(10_000_000);
const batch = z.number().int().min(1).max(1024);

/** POST /api/studies/:id/segmenter-runs: central training on the study's pool. */
export const TrainOnPoolBody = z.strictObject({
  model: segmenterModelSchema,
  profile: modelProfileSchema,
  steps,
  batch: batch.default(8),
});
export type TrainOnPoolBody = z.output<typeof TrainOnPoolBody>;

/** POST /api/evaluations: a central run, or stored segmenter weights of a study. */
export const EvaluateBody = z.union([
  z.strictObject({ segmenterRunId: z.uuid(), label: z.string().trim().min(1).max(128) }),
  z.strictObject({
    weightsSha256: sha256Hex,
    studyId: z.string().min(1).max(64),
    label: z.string().trim().min(1).max(128),
  }),
]);
export type EvaluateBody = z.output<typeof EvaluateBody>;

/** POST /api/studies/:id/utility: the whole comparison for one segmenter. */
export const UtilityBody = z.strictObject({
  model: segmenterModelSchema,
  profile: modelProfileSchema,
  /** central training steps (the 'synthetic' arm) */
  steps,
  batch: batch.default(8),
  /** FedAvg studies (real, both, mixing): rounds and steps per round */
  rounds: z.number().int().min(1).max(10_000),
  localSteps: steps,
  /** synthetic shares of the mixing experiment (each in [0, 1]); empty = no mixing */
  mixShares: z.array(z.number().min(0).max(1)).max(21).default([0, 0.25, 0.5, 0.75, 1]),
  /** the fixed total of the mixing studies (default: each site's real training slice count) */
  mixTotalSlices: z.number().int().min(1).optional(),
});
export type UtilityBody = z.output<typeof UtilityBody>;
