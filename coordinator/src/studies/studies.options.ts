/** Timing of the study orchestrator. */
export interface StudiesOptions {
  /** how often running studies are checked for passed round deadlines (0 = never on its own; call `tick()`) */
  tickIntervalMs: number;
  /**
   * the most training slices (the FedAvg weight) a round result may claim when the site's hello did not report its
   * training slice count; a larger claim is refused (BraTS 2021 at the paper's preprocessing is ~10^5 slices)
   */
  maxTrainSlices: number;
}

export const DEFAULT_STUDIES_OPTIONS: StudiesOptions = Object.freeze({
  tickIntervalMs: 5_000,
  maxTrainSlices: 1_000_000,
});

/** Injection token of the {@link StudiesOptions}. */
export const STUDIES_OPTIONS = Symbol.for('fedsynth.coordinator.studies-options');
