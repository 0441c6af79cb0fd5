// What the coordinator asks of a site in each study job, and what the site answers: the contract between the
// study orchestrator (coordinator/src/studies) and the site agent's job handlers (site-agent/src/agent/handlers).
// A job offer carries `payload` (validated by the handler with these schemas) and `inputs` (blobs by role); the
// site answers with `job:result` {metrics, outputs (uploaded blobs by role), summary}.
//
// | job kind    | payload                  | inputs (role)            | outputs (role, transfer kind)    | metrics / summary                     |
// |-------------|--------------------------|--------------------------|----------------------------------|---------------------------------------|
// | train-round | TrainRoundPayload        | global-weights (absent   | weights (round-update): training | metrics.trainSlices (FedAvg weight),  |
// |             |                          | in round 0 / local r0),  | weights blob; ema (round-update) | steps, finalLoss, seconds             |
// |             |                          | ema (when kept),         | when the model keeps an EMA      |                                       |
// |             |                          | synthetic-pool (slice    |                                  |                                       |
// |             |                          | store, when data mixes)  |                                  |                                       |
// | sample      | SamplePayload            | weights (+ ema)          | samples (samples): slice store   | metrics.count, seconds                |
// | evaluate    | EvaluatePayload          | segmenter                | none                             | summary: EvaluationSummary (metrics   |
// |             |                          |                          |                                  | only: never subject ids or pixels)    |
// | audit       | AuditPayload             | audit-pool (slice store) | scores (job-output): AuditScores | metrics: candidates, flagged, thr.    |
// |             |                          |                          | JSON (numbers only)              |                                       |
//
// Private data never appears in a payload or an answer: sites train, evaluate and audit on their own slices and
// send back weights, synthetic slices, metrics and scores.
import * as z from 'zod';

export const generatorModelSchema = z.enum(['progan', 'stylegan1', 'stylegan2', 'stylegan3', 'ddpm']);
export const segmenterModelSchema = z.enum(['unet', 'swin']);
export const modelProfileSchema = z.enum(['paper', 'cpu', 'tiny']);

/** Which network a job trains or uses. */
export const modelSpecSchema = z.discriminatedUnion('task', [
  z.strictObject({ task: z.literal('generator'), model: generatorModelSchema, profile: modelProfileSchema }),
  z.strictObject({ task: z.literal('segmenter'), model: segmenterModelSchema, profile: modelProfileSchema }),
]);
export type ModelSpec = z.output<typeof modelSpecSchema>;

const seedSchema = z
  .number()
  .int()
  .min(0)
  .max(2 ** 31 - 1);

/** One round of local training on the site's private real training slices. */
export const trainRoundPayloadSchema = z.strictObject({
  studyId: z.string().min(1).max(64),
  /** 0-based round index */
  round: z.number().int().min(0),
  model: modelSpecSchema,
  /** optimizer steps this round */
  localSteps: z.number().int().min(1).max(10_000_000),
  /**
   * Total rounds of the study (round < rounds). When given, step-dependent schedules (progressive growing, EMA
   * ramp-up, LR warm-up/poly) run over the whole study: round·localSteps + step out of rounds·localSteps. Absent:
   * the round is scheduled on its own (as a 1-round study).
   */
  rounds: z.number().int().min(1).max(1_000_000).optional(),
  batchSize: z.number().int().min(1).max(1024),
  seed: seedSchema,
  /** optional wall-clock budget for the round (the site stops after the step in progress) */
  maxSeconds: z.number().positive().optional(),
  /**
   * What the site trains on (segmenters; generators always use real slices only). Absent: the site's real training
   * slices. With `syntheticShare` s: a training set of `totalSlices` (default: the site's real training slice count)
   * drawn deterministically (seed) as round(s·total) slices of the `synthetic-pool` input and the rest from the
   * site's real training slices — s = 1 is "synthetic only", s = 0 "real only"; `both: true` instead uses all real
   * training slices plus the whole pool (the paper's "real + synthetic").
   */
  data: z
    .strictObject({
      syntheticShare: z.number().min(0).max(1).default(0),
      totalSlices: z.number().int().min(1).optional(),
      both: z.boolean().default(false),
    })
    .optional(),
});
export type TrainRoundPayload = z.output<typeof trainRoundPayloadSchema>;

/** Draw synthetic slices from the study's final generator. */
export const samplePayloadSchema = z.strictObject({
  studyId: z.string().min(1).max(64),
  model: modelSpecSchema,
  n: z.number().int().min(1).max(1_000_000),
  seed: seedSchema,
  /** GANs: truncation ψ in [0, 1] (1 = none) */
  truncationPsi: z.number().min(0).max(1).default(1),
  /** diffusion: DDIM steps (0 = full ancestral sampler) */
  ddimSteps: z.number().int().min(0).max(100_000).default(50),
});
export type SamplePayload = z.output<typeof samplePayloadSchema>;

/** Evaluate a segmenter on the site's held-out real test subjects. */
export const evaluatePayloadSchema = z.strictObject({
  studyId: z.string().min(1).max(64),
  /** what the coordinator calls this model in its report (e.g. 'unet/synthetic', 'unet/real-fedavg') */
  label: z.string().min(1).max(128),
});
export type EvaluatePayload = z.output<typeof evaluatePayloadSchema>;

/** Per-label and per-region scores. */
export const labelScoresSchema = z.strictObject({
  NCR: z.number().nullable(),
  ED: z.number().nullable(),
  ET: z.number().nullable(),
  WT: z.number().nullable(),
  TC: z.number().nullable(),
});
export type LabelScores = z.output<typeof labelScoresSchema>;

/**
 * What an evaluate job returns in `summary`: aggregate and per-subject metrics. Subjects are numbered 1..n in an
 * order the site chooses; their ids never leave the site.
 */
export const evaluationSummarySchema = z.strictObject({
  subjects: z.number().int().min(0),
  slices: z.number().int().min(0),
  mean: z.strictObject({ dice: labelScoresSchema, hd95: labelScoresSchema }),
  perSubject: z
    .array(
      z.strictObject({ subject: z.number().int().min(1), dice: labelScoresSchema, hd95: labelScoresSchema }),
    )
    .max(10_000),
});
export type EvaluationSummary = z.output<typeof evaluationSummarySchema>;

/** Score every candidate against the site's private training slices (memorization audit). */
export const auditPayloadSchema = z.strictObject({
  studyId: z.string().min(1).max(64),
  auditId: z.string().min(1).max(64),
  /** added to the site's reference (its train→held-out maxima) to make the threshold; see common/src/audit */
  margin: z.number().min(0).max(1),
});
export type AuditPayload = z.output<typeof auditPayloadSchema>;

/** The `scores` output of an audit job (JSON): numbers only, in candidate order. */
export const auditScoresSchema = z.strictObject({
  format: z.literal('fedsynth-audit-scores'),
  version: z.literal(1),
  /** max Pearson correlation of each candidate against the site's private training slices and their mirrors */
  scores: z.array(z.number().min(-1).max(1)),
  /** the site's train→held-out maxima (the "unseen real slice" reference), one per held-out slice */
  reference: z.array(z.number().min(-1).max(1)),
  /**
   * where `reference` came from: held-out test slices, or (a site with no held-out subject) training slices each
   * scored against the other training subjects only. Absent: 'held-out' (sites from before the field).
   */
  referenceKind: z.enum(['held-out', 'leave-one-subject-out']).optional(),
  threshold: z.number(),
  /** candidate indices above the threshold */
  flagged: z.array(z.number().int().min(0)),
});
export type AuditScores = z.output<typeof auditScoresSchema>;
