// Generators: the shared GAN machinery and the diffusion model as namespaces, and where each GAN architecture's
// module is (importing one registers it; put its URL in a training spec's taskModules beside GAN_TASK_MODULE, or
// let the 'gan' task import it by name).
export * as gan from './gan/index.js';
export * as ddpm from './ddpm/index.js';

/** Registered GAN architecture names -> the module that registers them (generators/<name>/index.js). */
export const GAN_ARCHITECTURE_MODULES: Readonly<
  Record<'progan' | 'stylegan1' | 'stylegan2' | 'stylegan3', string>
> = {
  progan: new URL('./progan/index.js', import.meta.url).href,
  stylegan1: new URL('./stylegan1/index.js', import.meta.url).href,
  stylegan2: new URL('./stylegan2/index.js', import.meta.url).href,
  stylegan3: new URL('./stylegan3/index.js', import.meta.url).href,
};
