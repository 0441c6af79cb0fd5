import { EnrollmentToken } from '../sites/enrollment-token.entity.js';
import { Site } from '../sites/site.entity.js';
import { User } from '../users/user.entity.js';

/** Every entity of the coordinator's database (passed as classes, not globs). */
export const ENTITIES = [User, Site, EnrollmentToken];
