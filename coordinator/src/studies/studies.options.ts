/** Timing of the study orchestrator. */
export interface StudiesOptions {
  /** how often running studies are checked for passed round deadlines (0 = never on its own; call `tick()`) */
  tickIntervalMs: number;
}

export const DEFAULT_STUDIES_OPTIONS: StudiesOptions = Object.freeze({ tickIntervalMs: 5_000 });

/** Injection token of the {@link StudiesOptions}. */
export const STUDIES_OPTIONS = Symbol.for('fedsynth.coordinator.studies-options');
