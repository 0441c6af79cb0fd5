// The job handlers the agent ships with, registered in the default registry on import.
import { defaultJobHandlers } from '../job-handlers.js';
import { echoUploadHandler } from './echo-upload.js';

export * from './echo-upload.js';

defaultJobHandlers.register('echo-upload', echoUploadHandler);
