// The diffusion model (DDPM with a DDIM sampler) for 5-channel slices. The architecture name 'ddpm' is
// rebuilt by buildDdpmFromArchitecture; the training task registers as 'ddpm' when ddpm-task.js is imported.
export * from './schedule.js';
export * from './unet-denoiser.js';
export * from './ddpm.js';
export { DDPM_TASK_KIND, DDPM_TASK_MODULE, ddpmOptimizer, type DdpmTaskConfig } from './ddpm-task.js';
