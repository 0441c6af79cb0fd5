// Progressive growing (Karras et al. 2018, §3): training starts at 4×4 (level 0) and adds one doubled resolution
// at a time. Each new level is first faded in (alpha 0 → 1: the new block's output is blended with the upsampled
// output of the level below), then stabilised (alpha 1). Here the schedule is a pure function of the training
// progress, as the shared GAN types require (a resumed run must see the same level and alpha at every step).
import type { GanTrainingProgress } from '../gan/types.js';

/** Which resolution a progressive model runs at, and how far its newest level is faded in. */
export interface GrowthState {
  /** 0 = 4×4, 1 = 8×8, ... up to levels − 1 = the full resolution. */
  level: number;
  /** Weight of the newest level in [0, 1]; 1 when stabilising (and always at level 0). */
  alpha: number;
}

export type GrowthSchedule =
  /**
   * The run's steps split into equal phases: stabilise level 0, then fade in and stabilise each further level
   * (2·levels − 1 phases); the last phase ends at the last step.
   */
  | { kind: 'equal' }
  /**
   * The paper's schedule in real images shown to D: stabilise level 0 for stabiliseImages, then per level fade
   * for fadeImages and stabilise for stabiliseImages (ProGAN: 800k each); the final level then trains until the
   * run ends. A run too short to reach the top finishes at a lower level.
   */
  | { kind: 'images'; stabiliseImages: number; fadeImages: number };

/** Number of levels from 4×4 up to `resolution` (a power of two ≥ 4). */
export function growthLevels(resolution: number): number {
  const log2 = Math.log2(resolution);
  if (!Number.isInteger(log2) || log2 < 2) {
    throw new Error(`progressive growing: resolution must be a power of two >= 4, got ${resolution}`);
  }
  return log2 - 1;
}

/** The fully grown state: the top level, alpha 1 (a freshly built model, sampling). */
export function fullyGrown(levels: number): GrowthState {
  return { level: levels - 1, alpha: 1 };
}

/** Level and alpha at a point of training. */
export function growthAt(
  schedule: GrowthSchedule,
  levels: number,
  progress: Pick<GanTrainingProgress, 'step' | 'totalSteps' | 'imagesSeen'>,
): GrowthState {
  if (levels <= 1) return { level: 0, alpha: 1 };
  if (schedule.kind === 'equal') {
    const phases = 2 * levels - 1;
    const total = Math.max(progress.totalSteps, 1);
    const position = (Math.min(Math.max(progress.step, 0), total) / total) * phases;
    const phase = Math.min(Math.floor(position), phases - 1);
    return phaseState(phase, Math.min(position - phase, 1));
  }
  const { stabiliseImages, fadeImages } = schedule;
  if (!(stabiliseImages > 0) || !(fadeImages >= 0)) {
    throw new Error(`progressive growing: bad schedule ${JSON.stringify(schedule)}`);
  }
  let images = Math.max(progress.imagesSeen, 0);
  if (images < stabiliseImages) return { level: 0, alpha: 1 };
  images -= stabiliseImages;
  const perLevel = fadeImages + stabiliseImages;
  const level = 1 + Math.floor(images / perLevel);
  if (level >= levels) return fullyGrown(levels);
  const within = images - (level - 1) * perLevel;
  return { level, alpha: within < fadeImages ? within / fadeImages : 1 };
}

/** Phase 0: level 0; phase 2k − 1: fading level k in (alpha = t); phase 2k: stabilising level k. */
function phaseState(phase: number, t: number): GrowthState {
  if (phase === 0) return { level: 0, alpha: 1 };
  const level = Math.ceil(phase / 2);
  return { level, alpha: phase % 2 === 1 ? t : 1 };
}
