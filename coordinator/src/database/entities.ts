import { Audit } from '../audits/audit.entity.js';
import { BlobRecord } from '../blobs/blob-record.entity.js';
import { Evaluation, SegmenterRun, UtilityRun } from '../evaluations/evaluation.entities.js';
import { SiteSession } from '../federation/site-session.entity.js';
import { Job } from '../jobs/job.entity.js';
import { Release } from '../releases/release.entity.js';
import { PoolSample, Study, StudyRound } from '../studies/study.entity.js';
import { EnrollmentToken } from '../sites/enrollment-token.entity.js';
import { Site } from '../sites/site.entity.js';
import { User } from '../users/user.entity.js';

/** Every entity of the coordinator's database (passed as classes, not globs). */
export const ENTITIES = [
  User,
  Site,
  EnrollmentToken,
  Job,
  SiteSession,
  BlobRecord,
  Study,
  StudyRound,
  PoolSample,
  SegmenterRun,
  Evaluation,
  UtilityRun,
  Audit,
  Release,
];
