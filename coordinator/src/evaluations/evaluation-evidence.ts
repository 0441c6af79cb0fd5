import { Injectable } from '@nestjs/common';
import type { ReleaseEvaluationFact } from '@fedsynth/common/release/index';
import { ReleaseEvidence } from '../releases/release-evidence.js';
import { UtilityService } from './utility.service.js';

/**
 * A release card's utility numbers: for each segmenter model, the latest finished comparison of the study — one
 * fact per evaluated arm (Dice and HD95 over all sites' real test subjects), the synthetic/real ratio in the note.
 */
@Injectable()
export class EvaluationEvidence extends ReleaseEvidence {
  constructor(private readonly utility: UtilityService) {
    super();
  }

  override async evaluationFor(studyId: string): Promise<ReleaseEvaluationFact[]> {
    const { runs } = await this.utility.report(studyId);
    const latest = new Map<string, (typeof runs)[number]>();
    for (const run of runs) if (run.state === 'done') latest.set(run.model, run); // runs come oldest first
    const facts: ReleaseEvaluationFact[] = [];
    for (const run of latest.values()) {
      for (const arm of run.arms) {
        if (arm.state !== 'done' || !arm.dice) continue;
        const ratio = arm.trainedOn === 'synthetic' ? run.table.syntheticToReal : null;
        facts.push({
          label: `${run.model}/${arm.trainedOn}`,
          dice: arm.dice,
          ...(arm.hd95 ? { hd95: arm.hd95 } : {}),
          ...(arm.subjects !== null ? { subjects: arm.subjects } : {}),
          ...(arm.sites !== null ? { sites: arm.sites } : {}),
          ...(ratio
            ? {
                note: `Dice synthetic/real: ${(['WT', 'TC', 'ET'] as const)
                  .map((k) => `${k} ${ratio[k] === null ? 'n/a' : ratio[k].toFixed(3)}`)
                  .join(', ')}`,
              }
            : {}),
        });
      }
    }
    return facts;
  }
}
