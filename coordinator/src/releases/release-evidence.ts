import { Injectable } from '@nestjs/common';
import type { ReleaseEvaluationFact } from '@fedsynth/common/release/index';

/**
 * Where a release's card gets its utility numbers (segmenters trained on the pool, measured on the sites' real
 * test cases). This default knows none; the evaluations feature provides the real one, e.g.
 * `ReleasesModule.withEvidence(EvaluationEvidence, [EvaluationsModule])`.
 */
@Injectable()
export class ReleaseEvidence {
  async evaluationFor(_studyId: string): Promise<ReleaseEvaluationFact[]> {
    return [];
  }
}
