// The job handlers the agent ships with, registered in the default registry on import.
import { defaultJobHandlers } from '../job-handlers.js';
import { auditHandler } from './audit.js';
import { echoUploadHandler } from './echo-upload.js';
import { evaluateHandler } from './evaluate.js';
import { sampleHandler } from './sample.js';
import { trainRoundHandler } from './train-round.js';

export * from './audit.js';
export * from './echo-upload.js';
export * from './evaluate.js';
export * from './sample.js';
export * from './train-round.js';

defaultJobHandlers.register('echo-upload', echoUploadHandler);
defaultJobHandlers.register('train-round', trainRoundHandler);
defaultJobHandlers.register('sample', sampleHandler);
defaultJobHandlers.register('evaluate', evaluateHandler);
defaultJobHandlers.register('audit', auditHandler);
