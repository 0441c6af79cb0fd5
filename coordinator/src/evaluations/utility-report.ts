// The paper's comparison as a table, computed only from stored evaluation numbers: Dice (and HD95) on the sites'
// real test subjects of a segmenter trained on synthetic slices (central, on the pool), on real slices (FedAvg),
// on both, the synthetic/real and both/real ratios per label and region, and the mixing experiment.
import type { Evaluation, ScoreTable, TrainedOn, UtilityArm, UtilityRun } from './evaluation.entities.js';
import { SCORE_KEYS } from './evaluation-aggregate.js';

export interface ArmReport {
  trainedOn: TrainedOn;
  state: UtilityArm['state'];
  segmenterRunId: string | null;
  segmenterStudyId: string | null;
  weightsSha256: string | null;
  evaluationId: string | null;
  error: string | null;
  subjects: number | null;
  sites: number | null;
  dice: ScoreTable | null;
  hd95: ScoreTable | null;
}

export interface UtilityRunReport {
  id: string;
  state: UtilityRun['state'];
  error: string | null;
  model: string;
  profile: string;
  params: UtilityRun['params'];
  createdAt: string;
  finishedAt: string | null;
  arms: ArmReport[];
  /** mean Dice per label and region of each arm, and the ratios against the real baseline */
  table: {
    synthetic: ScoreTable | null;
    real: ScoreTable | null;
    both: ScoreTable | null;
    syntheticToReal: ScoreTable | null;
    bothToReal: ScoreTable | null;
  };
  /** real:synthetic proportions at a fixed total, by synthetic share */
  mixing: Array<{ syntheticShare: number; dice: ScoreTable | null; toReal: ScoreTable | null }>;
}

export interface UtilityReport {
  studyId: string;
  runs: UtilityRunReport[];
}

/** a/b per key; null where either is missing or the denominator is 0. */
export function ratioTable(a: ScoreTable | null, b: ScoreTable | null): ScoreTable | null {
  if (!a || !b) return null;
  const out = {} as ScoreTable;
  for (const key of SCORE_KEYS) {
    const x = a[key];
    const y = b[key];
    out[key] = x === null || y === null || y === 0 ? null : x / y;
  }
  return out;
}

export function buildRunReport(
  run: UtilityRun,
  evaluations: ReadonlyMap<string, Evaluation>,
): UtilityRunReport {
  const arms: ArmReport[] = run.arms.map((arm) => {
    const e = arm.evaluationId ? evaluations.get(arm.evaluationId) : undefined;
    const result = e?.state === 'done' ? e.result : null;
    return {
      trainedOn: arm.trainedOn,
      state: arm.state,
      segmenterRunId: arm.segmenterRunId ?? null,
      segmenterStudyId: arm.segmenterStudyId ?? null,
      weightsSha256: arm.weightsSha256 ?? null,
      evaluationId: arm.evaluationId ?? null,
      error: arm.error ?? null,
      subjects: result?.subjects ?? null,
      sites: result?.sites ?? null,
      dice: result?.mean.dice ?? null,
      hd95: result?.mean.hd95 ?? null,
    };
  });
  const diceOf = (trainedOn: string) => arms.find((a) => a.trainedOn === trainedOn)?.dice ?? null;
  const real = diceOf('real');
  return {
    id: run.id,
    state: run.state,
    error: run.error,
    model: run.params.model,
    profile: run.params.profile,
    params: run.params,
    createdAt: run.createdAt.toISOString(),
    finishedAt: run.finishedAt?.toISOString() ?? null,
    arms,
    table: {
      synthetic: diceOf('synthetic'),
      real,
      both: diceOf('both'),
      syntheticToReal: ratioTable(diceOf('synthetic'), real),
      bothToReal: ratioTable(diceOf('both'), real),
    },
    mixing: arms
      .filter((a) => a.trainedOn.startsWith('mix:'))
      .map((a) => ({
        syntheticShare: Number(a.trainedOn.slice('mix:'.length)),
        dice: a.dice,
        toReal: ratioTable(a.dice, real),
      }))
      .sort((x, y) => x.syntheticShare - y.syntheticShare),
  };
}
