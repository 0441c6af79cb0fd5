import { modelSpecSchema, trainRoundPayloadSchema } from '@fedsynth/common/protocol/index';
import { z } from 'zod';
import { STUDY_MODES } from './study.entity.js';

const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, 'a sha256 is 64 lowercase hex digits');

/**
 * POST /api/studies. Rules that need more than one field (generator ⇔ samplesPerSite, minSites ≤ sites, the pool
 * with a data mix) are checked by StudiesService.create, which other modules call directly too.
 */
export const CreateStudyBody = z.strictObject({
  name: z.string().trim().min(1).max(128),
  model: modelSpecSchema,
  mode: z.enum(STUDY_MODES).default('fedavg'),
  rounds: z.number().int().min(1).max(10_000),
  localSteps: z.number().int().min(1).max(10_000_000),
  batchSize: z.number().int().min(1).max(1024),
  /** generators: slices each site draws from the final model; must be 0 (or absent) for segmenters. At most
   * 100 000 (≈ 6.5 GB of 256² 5-channel slices per site; the paper drew 10 000–100 000 per generator) */
  samplesPerSite: z.number().int().min(0).max(100_000).default(0),
  /** sites a round needs before it may close at its deadline; default: all selected sites */
  minSites: z.number().int().min(1).optional(),
  /** after this, a round closes as soon as minSites have finished (late sites rejoin the next round) */
  roundTimeoutMs: z
    .number()
    .int()
    .min(1000)
    .max(30 * 24 * 3600_000)
    .default(3600_000),
  /** optional wall-clock budget per site and round (TrainRoundPayload.maxSeconds) */
  maxSeconds: z.number().positive().optional(),
  siteIds: z.array(z.uuid()).min(1).max(1000),
  seed: z
    .number()
    .int()
    .min(0)
    .max(2 ** 31 - 1)
    .default(0),
  truncationPsi: z.number().min(0).max(1).default(1),
  ddimSteps: z.number().int().min(0).max(100_000).default(50),
  /** segmenters: the training data mix (see TrainRoundPayload.data) */
  data: trainRoundPayloadSchema.shape.data,
  /** segmenters: a slice store on the coordinator sent to every site as 'synthetic-pool' */
  syntheticPoolSha256: sha256Hex.optional(),
});
export type CreateStudyBody = z.input<typeof CreateStudyBody>;
export type CreateStudyDto = z.output<typeof CreateStudyBody>;
