import { Injectable } from '@nestjs/common';
import { TypedEvents } from '../jobs/typed-events.js';
import type { Study } from './study.entity.js';

export interface StudyEventMap {
  /** a round closed (its global weights stored, for fedavg) */
  roundClosed: { study: Study; round: number };
  /** terminal: training (and sampling, for generators) finished */
  studyDone: { study: Study };
  /** terminal: `study.error` says why */
  studyFailed: { study: Study };
  studyCancelled: { study: Study };
}

/** In-process notifications about studies, emitted after the change was persisted. */
@Injectable()
export class StudyEvents extends TypedEvents<StudyEventMap> {}
