// Shared GAN infrastructure: the architecture contract (types), the registry, losses and regularisers, common
// layers, sampling, and the 'gan' training task (registered when gan-task.js is imported, as this barrel does;
// GAN_TASK_MODULE goes in a training spec's taskModules).
export * from './types.js';
export * from './registry.js';
export * from './layers.js';
export * from './losses.js';
export * from './sampling.js';
export {
  GAN_TASK_KIND,
  GAN_TASK_MODULE,
  lazyOptimizer,
  resolveGanRecipe,
  type GanRecipe,
  type GanTaskConfig,
} from './gan-task.js';
