// The 'gan' training task: trains any registered GAN architecture (progan, stylegan1/2/3, ...) on a slice store's
// training slices with the runtime's optimizer phases. Per step, in order (each phase all-reduced and applied
// before the next, so G sees the D just updated):
//   D     D's loss on this step's reals and fresh fakes (non-saturating, or WGAN-GP with drift);
//         R1 folded in when the architecture regularises every step (lazyRegInterval 1, StyleGAN1)
//   Dreg  lazy R1 every k steps (γ/2·E‖∇D‖²·k), sharing D's Adam, whose lr/betas use StyleGAN2's c = k/(k+1)
//   G     G's loss through the updated D
//   Greg  lazy path-length regularisation every k' steps (style-based generators), sharing G's Adam
// and after the step the EMA of G's weights (G_ema), which the run returns as emaWeightsBlob: the generator to
// sample from (loadGenerator + sampleGenerator). Importing this module registers the task; GAN_TASK_MODULE goes
// in spec.taskModules (an architecture registers when its module generators/<name>/index.js is imported; the
// task imports it by name when it is not yet registered).
import * as tf from '@tensorflow/tfjs';

import { SliceStoreReader } from '../../../slices/slice-store.js';
import type { Rng } from '../../../util/rng.js';
import type { TrainableModel } from '../../model.js';
import type { OptimizerSpec } from '../../training/optimizers.js';
import {
  registerTrainingTask,
  type EmaSpec,
  type PhaseOutcome,
  type PhaseResult,
  type PhaseSpec,
  type StepBatch,
  type TaskContext,
  type TaskInit,
  type TrainingTask,
} from '../../training/registry.js';
import { scheduleTotalSteps, type TrainingSpec } from '../../training/spec.js';

import {
  flattenScores,
  nonSaturatingDiscriminatorLoss,
  nonSaturatingGeneratorLoss,
  pathLengthPenalty,
  r1Penalty,
  squaredGradientNorms,
  wganGeneratorLoss,
  wganGpDiscriminatorLoss,
} from './losses.js';
import { ganArchitecture, ganConfig, registeredGanArchitectures } from './registry.js';
import { latentsFor } from './sampling.js';
import {
  GAN_CHANNELS,
  type DiscriminatorModel,
  type GanArchitecture,
  type GanLossKind,
  type GanProfileName,
  type GanTrainingOptions,
  type GeneratorModel,
  type MappingOptions,
} from './types.js';

export const GAN_TASK_KIND = 'gan';
export const GAN_TASK_MODULE = import.meta.url;

export interface GanTaskConfig {
  /**
   * A registered architecture with its config, or one of its profiles (default 'cpu'). With a config, `profile`
   * names the profile it is (or was made from): that profile's recipe changes apply (GanArchitecture.profileOptions).
   */
  architecture: { name: string; config?: Record<string, unknown>; profile?: GanProfileName };
  /** Absolute path of the slice store; training uses its 'train' subjects. */
  store: string;
  /** 'all' (default): every training subject, labelled or not (the store admits unlabelled cases for
   * generation; their annotation channel is 0); 'labelled': only annotated ones. */
  subjects?: 'all' | 'labelled';
  /** Left-right mirror augmentation of reals (default: the architecture's, else true; the paper's training). */
  mirror?: boolean;
  /** Overrides of the architecture's recipe (GanTrainingOptions). */
  r1Gamma?: number;
  lazyRegInterval?: number;
  /** A fixed EMA β per step (default: the architecture's half-life rule). */
  emaBeta?: number;
  gpLambda?: number;
  driftEpsilon?: number;
  /** 0 turns path-length regularisation off. */
  pathLengthWeight?: number;
  styleMixingProbability?: number;
  generatorOptimizer?: OptimizerSpec;
  discriminatorOptimizer?: OptimizerSpec;
}

/** The resolved recipe (architecture defaults + the task config's overrides). */
export interface GanRecipe {
  loss: GanLossKind;
  mirror: boolean;
  r1Gamma: number;
  lazyRegInterval: number;
  gpLambda: number;
  driftEpsilon: number;
  pathLength?: { weight: number; interval: number; decay: number; batchShrink: number };
  styleMixingProbability: number;
  ema: EmaSpec['beta'];
  generatorOptimizer: OptimizerSpec;
  discriminatorOptimizer: OptimizerSpec;
}

/** StyleGAN2's lazy-regularisation adjustment of an optimizer that also takes regularisation steps every k. */
export function lazyOptimizer(spec: OptimizerSpec, interval: number): OptimizerSpec {
  if (interval <= 1) return spec;
  const c = interval / (interval + 1);
  if (spec.type === 'adamw') {
    return { ...spec, lr: spec.lr * c, beta1: (spec.beta1 ?? 0.9) ** c, beta2: (spec.beta2 ?? 0.999) ** c };
  }
  return { ...spec, lr: spec.lr * c, ...(spec.momentum !== undefined && { momentum: spec.momentum ** c }) };
}

export function resolveGanRecipe(
  entry: GanArchitecture,
  generator: GeneratorModel,
  config: GanTaskConfig,
): GanRecipe {
  // The profile the architecture config is: named, or the one ganConfig picks when there is no config.
  const profile = config.architecture.profile ?? (config.architecture.config ? undefined : 'cpu');
  const o: GanTrainingOptions = { ...entry.options, ...(profile && entry.profileOptions?.[profile]) };
  const lazyRegInterval = config.lazyRegInterval ?? o.lazyRegInterval ?? 1;
  const pl = o.pathLength;
  const plWeight = config.pathLengthWeight ?? pl?.weight ?? 0;
  const styleBased = !!(generator.mapLatents && generator.synthesize);
  const pathLength =
    entry.loss === 'nonsaturating-r1' && plWeight > 0 && styleBased
      ? {
          weight: plWeight,
          interval: pl?.interval ?? 4,
          decay: pl?.decay ?? 0.01,
          batchShrink: pl?.batchShrink ?? 2,
        }
      : undefined;
  const r1Gamma = config.r1Gamma ?? o.r1Gamma ?? 10;
  const lazyR1 = entry.loss === 'nonsaturating-r1' && r1Gamma > 0 && lazyRegInterval > 1;
  const ema: EmaSpec['beta'] =
    config.emaBeta !== undefined
      ? config.emaBeta
      : o.ema === undefined
        ? { halfLifeImages: 10_000 }
        : 'beta' in o.ema
          ? o.ema.beta
          : o.ema;
  return {
    loss: entry.loss,
    mirror: config.mirror ?? o.mirror ?? true,
    r1Gamma,
    lazyRegInterval,
    gpLambda: config.gpLambda ?? o.gpLambda ?? 10,
    driftEpsilon: config.driftEpsilon ?? o.driftEpsilon ?? 0.001,
    ...(pathLength && { pathLength }),
    styleMixingProbability:
      (generator.numStyleLayers ?? 1) > 1
        ? (config.styleMixingProbability ?? o.styleMixingProbability ?? 0)
        : 0,
    ema,
    discriminatorOptimizer: lazyOptimizer(
      config.discriminatorOptimizer ?? o.discriminatorOptimizer,
      lazyR1 ? lazyRegInterval : 1,
    ),
    generatorOptimizer: lazyOptimizer(
      config.generatorOptimizer ?? o.generatorOptimizer,
      pathLength ? pathLength.interval : 1,
    ),
  };
}

/** Stores up to this size are read into memory once; larger ones batch by batch from disk. */
const IN_MEMORY_LIMIT_BYTES = 1 << 30;
const SEED_RANGE = 2 ** 31;

/** Imports generators/<name>/index.js when `name` is not registered yet (the architectures register on import). */
async function ensureArchitecture(name: string): Promise<GanArchitecture> {
  if (!registeredGanArchitectures().includes(name) && /^[a-z0-9-]+$/.test(name)) {
    try {
      await import(new URL(`../${name}/index.js`, import.meta.url).href);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ERR_MODULE_NOT_FOUND') throw error;
    }
  }
  return ganArchitecture(name);
}

export class GanTask implements TrainingTask<GanTaskConfig> {
  private config!: GanTaskConfig;
  private recipe!: GanRecipe;
  private generator!: GeneratorModel;
  private discriminator!: DiscriminatorModel;
  private model!: TrainableModel;
  private gNames: string[] = [];
  private dNames: string[] = [];
  private totalSteps = 0;
  private plMean?: tf.Variable;
  private store?: SliceStoreReader;
  private cached?: Uint8Array;
  private trainIndices: number[] = [];

  async init(spec: TrainingSpec<GanTaskConfig>, ctx: TaskContext): Promise<TaskInit> {
    this.config = spec.config;
    // The schedule's length (a FedAvg round is part of a longer schedule, see TrainingSpec.totalSteps).
    this.totalSteps = scheduleTotalSteps(spec);
    const { name } = spec.config.architecture;
    const entry = await ensureArchitecture(name);
    const config = ganConfig(name, spec.config.architecture);
    const { generator, discriminator } = entry.build(config, spec.seed);
    this.generator = generator;
    this.discriminator = discriminator;
    if (generator.channels !== GAN_CHANNELS || discriminator.channels !== GAN_CHANNELS) {
      throw new Error(`GAN '${name}': models must have ${GAN_CHANNELS} channels`);
    }
    if (generator.resolution !== discriminator.resolution) {
      throw new Error(
        `GAN '${name}': G makes ${generator.resolution}², D reads ${discriminator.resolution}²`,
      );
    }
    this.recipe = resolveGanRecipe(entry, generator, spec.config);
    const variables: Record<string, tf.Variable> = {};
    for (const [key, variable] of Object.entries(generator.variables)) variables[`G/${key}`] = variable;
    for (const [key, variable] of Object.entries(discriminator.variables)) variables[`D/${key}`] = variable;
    this.gNames = Object.keys(generator.variables).map((key) => `G/${key}`);
    this.dNames = Object.keys(discriminator.variables).map((key) => `D/${key}`);
    this.model = {
      architecture: { name: 'gan', config: { architecture: name, config } },
      variables,
      dispose: () => {
        generator.dispose();
        discriminator.dispose();
      },
    };
    const r = this.recipe;
    const nonSaturating = r.loss === 'nonsaturating-r1';
    const lazyR1 = nonSaturating && r.r1Gamma > 0 && r.lazyRegInterval > 1;
    const foldedR1 = nonSaturating && r.r1Gamma > 0 && !lazyR1;
    const phases: PhaseSpec[] = [
      {
        name: 'D',
        variables: this.dNames,
        optimizer: r.discriminatorOptimizer,
        metrics: nonSaturating
          ? ['realScore', 'fakeScore', ...(foldedR1 ? ['gradNormSq'] : [])]
          : ['wasserstein', 'gradientPenalty'],
      },
    ];
    if (lazyR1) {
      phases.push({
        name: 'Dreg',
        shareOptimizerWith: 'D',
        every: r.lazyRegInterval,
        metrics: ['gradNormSq'],
      });
    }
    phases.push({
      name: 'G',
      variables: this.gNames,
      optimizer: r.generatorOptimizer,
      metrics: ['fakeScore'],
    });
    const buffers: Record<string, tf.Variable> = {};
    if (r.pathLength) {
      phases.push({
        name: 'Greg',
        shareOptimizerWith: 'G',
        every: r.pathLength.interval,
        metrics: ['pathLength'],
      });
      this.plMean = tf.variable(tf.scalar(0), false);
      buffers.plMean = this.plMean;
    }
    if (ctx.workerIndex === 0) {
      ctx.log(
        `gan ${name}: ${r.loss}, phases ${phases.map((p) => (p.every ? `${p.name}/${p.every}` : p.name)).join(' ')}` +
          `, mirror ${r.mirror}, EMA ${JSON.stringify(r.ema)}`,
      );
    }
    return {
      model: this.model,
      phases,
      lossPhase: 'D',
      buffers,
      ema: {
        variables: this.gNames,
        beta: r.ema,
        stripPrefix: 'G/',
        architecture: generator.architecture,
      },
    };
  }

  async loadShard(): Promise<void> {
    const store = await SliceStoreReader.open(this.config.store);
    this.store = store;
    if (store.meta.size !== this.generator.resolution) {
      throw new Error(
        `${store.file}: slices are ${store.meta.size}² but the ${this.config.architecture.name} generator makes ` +
          `${this.generator.resolution}² (use the matching preset or profile)`,
      );
    }
    if (store.meta.channels.length !== GAN_CHANNELS) {
      throw new Error(`${store.file}: ${store.meta.channels.length} channels, the GAN needs ${GAN_CHANNELS}`);
    }
    this.trainIndices = store.indicesOf('train', { labelledOnly: this.config.subjects === 'labelled' });
    if (this.trainIndices.length === 0) throw new Error(`${store.file}: no training slices`);
    if (store.count * store.meta.sliceBytes <= IN_MEMORY_LIMIT_BYTES) {
      this.cached = await store.readRange(0, store.count);
    }
  }

  /** This worker's part of the step's real batch (the same in every phase of the step), mirrored, in [-1, 1]. */
  private async reals(batch: StepBatch): Promise<tf.Tensor4D> {
    const rng = batch.stepSharedRng;
    const global = Array.from(
      { length: batch.globalSize },
      () => this.trainIndices[rng.int(this.trainIndices.length)]!,
    );
    const flips = Array.from({ length: batch.globalSize }, () => this.recipe.mirror && rng.chance(0.5));
    const mine = global.slice(batch.offset, batch.offset + batch.count);
    const mirrored = flips.slice(batch.offset, batch.offset + batch.count);
    const { sliceBytes, size } = this.store!.meta;
    let bytes: Uint8Array;
    if (this.cached) {
      bytes = new Uint8Array(mine.length * sliceBytes);
      mine.forEach((index, k) =>
        bytes.set(this.cached!.subarray(index * sliceBytes, (index + 1) * sliceBytes), k * sliceBytes),
      );
    } else {
      bytes = await this.store!.readIndices(mine);
    }
    const values = new Float32Array(bytes.length);
    const row = size * GAN_CHANNELS;
    for (let k = 0; k < mine.length; k++) {
      for (let y = 0; y < size; y++) {
        const base = k * sliceBytes + y * row;
        for (let x = 0; x < size; x++) {
          const source = base + (mirrored[k] ? size - 1 - x : x) * GAN_CHANNELS;
          const target = base + x * GAN_CHANNELS;
          for (let c = 0; c < GAN_CHANNELS; c++) values[target + c] = bytes[source + c]! / 127.5 - 1;
        }
      }
    }
    return tf.tensor4d(values, [mine.length, size, size, GAN_CHANNELS]);
  }

  /** This worker's part of a global batch of latents drawn from a shared stream. */
  private latents(rng: Rng, batch: StepBatch, count = batch.count): tf.Tensor2D {
    const dim = this.generator.latentDim;
    const all = latentsFor(rng, 0, batch.globalSize, dim);
    return tf.tensor2d(all.subarray(batch.offset * dim, (batch.offset + count) * dim), [count, dim]);
  }

  /** Style mixing for this phase's batch (StyleGAN2: once per batch with probability p); tensors to dispose. */
  private styleMixing(rng: Rng, batch: StepBatch, count: number): MappingOptions['styleMixing'] | undefined {
    const layers = this.generator.numStyleLayers ?? 1;
    if (this.recipe.styleMixingProbability <= 0 || layers <= 1) return undefined;
    if (!rng.chance(this.recipe.styleMixingProbability)) return undefined;
    const crossover = 1 + rng.int(layers - 1);
    return { latents: this.latents(rng, batch, count), crossover };
  }

  private score(images: tf.Tensor4D): tf.Tensor1D {
    return flattenScores(this.discriminator.score(images, true));
  }

  async computePhase(
    phase: Readonly<PhaseSpec>,
    step: number,
    rng: Rng,
    batch: StepBatch,
  ): Promise<PhaseResult> {
    const progress = {
      step,
      totalSteps: this.totalSteps,
      batchSize: batch.globalSize,
      imagesSeen: step * batch.globalSize,
    };
    this.generator.setProgress?.(progress);
    this.discriminator.setProgress?.(progress);
    const needsReals = phase.name === 'D' || phase.name === 'Dreg';
    const reals = needsReals ? await this.reals(batch) : undefined;
    const owned: tf.Tensor[] = reals ? [reals] : [];
    try {
      if (phase.name === 'D') return this.discriminatorPhase(reals!, rng, batch, owned);
      if (phase.name === 'Dreg') return this.r1Phase(reals!, batch);
      if (phase.name === 'G') return this.generatorPhase(rng, batch, owned);
      if (phase.name === 'Greg') return this.pathLengthPhase(rng, batch, owned);
      throw new Error(`gan task: unknown phase '${phase.name}'`);
    } finally {
      tf.dispose(owned);
    }
  }

  private realsForD(reals: tf.Tensor4D): tf.Tensor4D {
    return this.discriminator.prepareReals ? this.discriminator.prepareReals(reals) : reals;
  }

  /** Runs `loss` under variableGrads for `names`, returning the loss, gradients by name and scalar metrics. */
  private differentiate(
    names: string[],
    count: number,
    loss: () => { value: tf.Scalar; metrics: Record<string, tf.Tensor> },
  ): PhaseResult {
    const variables = names.map((name) => this.model.variables[name]!);
    let metricTensors: Record<string, tf.Tensor> = {};
    const { value, grads } = tf.tidy(() =>
      tf.variableGrads(() => {
        const out = loss();
        metricTensors = Object.fromEntries(
          Object.entries(out.metrics).map(([key, tensor]) => [key, tf.keep(tf.mean(tensor))]),
        );
        return out.value;
      }, variables),
    );
    const metrics: Record<string, number> = {};
    for (const [key, tensor] of Object.entries(metricTensors)) metrics[key] = tensor.dataSync()[0]!;
    const lossValue = value.dataSync()[0]!;
    tf.dispose([value, ...Object.values(metricTensors)]);
    const byName: Record<string, tf.Tensor> = {};
    names.forEach((name, index) => {
      const gradient = grads[variables[index]!.name];
      if (gradient) byName[name] = gradient;
    });
    return { loss: lossValue, grads: byName, images: count, metrics };
  }

  private discriminatorPhase(
    reals: tf.Tensor4D,
    rng: Rng,
    batch: StepBatch,
    owned: tf.Tensor[],
  ): PhaseResult {
    const r = this.recipe;
    const z = this.latents(batch.sharedRng, batch);
    const mixing = this.styleMixing(batch.sharedRng, batch, batch.count);
    owned.push(z, ...(mixing ? [mixing.latents] : []));
    const noiseSeed = rng.int(SEED_RANGE);
    // Fakes outside the tape: D's phase differentiates D only.
    const fakes = tf.tidy(() =>
      this.generator.generate(z, { noiseSeed, training: true, ...(mixing && { styleMixing: mixing }) }),
    );
    owned.push(fakes);
    if (r.loss === 'wgan-gp') {
      const alpha = tf.randomUniform([batch.count], 0, 1, 'float32', rng.int(SEED_RANGE)) as tf.Tensor1D;
      owned.push(alpha);
      return this.differentiate(this.dNames, batch.count, () => {
        const prepared = this.realsForD(reals);
        const terms = wganGpDiscriminatorLoss((x) => this.score(x), prepared, fakes, {
          alpha,
          lambda: r.gpLambda,
          driftEpsilon: r.driftEpsilon,
        });
        return {
          value: terms.loss,
          metrics: { wasserstein: terms.wasserstein, gradientPenalty: terms.gradientPenalty },
        };
      });
    }
    const foldedR1 = r.r1Gamma > 0 && r.lazyRegInterval <= 1;
    return this.differentiate(this.dNames, batch.count, () => {
      const prepared = this.realsForD(reals);
      const realScores = this.score(prepared);
      const fakeScores = this.score(fakes);
      let value = nonSaturatingDiscriminatorLoss(realScores, fakeScores);
      const metrics: Record<string, tf.Tensor> = { realScore: realScores, fakeScore: fakeScores };
      if (foldedR1) {
        const norms = squaredGradientNorms((x) => this.score(x), prepared);
        value = tf.add(value, tf.mul(tf.mean(norms), r.r1Gamma / 2)) as tf.Scalar;
        metrics.gradNormSq = norms;
      }
      return { value, metrics };
    });
  }

  private r1Phase(reals: tf.Tensor4D, batch: StepBatch): PhaseResult {
    const r = this.recipe;
    return this.differentiate(this.dNames, batch.count, () => {
      const prepared = this.realsForD(reals);
      const value = r1Penalty((x) => this.score(x), prepared, {
        gamma: r.r1Gamma,
        interval: r.lazyRegInterval,
      });
      // E‖∇D‖² (the penalty divided by γ/2·k), for progress.
      return { value, metrics: { gradNormSq: tf.div(value, (r.r1Gamma / 2) * r.lazyRegInterval) } };
    });
  }

  private generatorPhase(rng: Rng, batch: StepBatch, owned: tf.Tensor[]): PhaseResult {
    const r = this.recipe;
    const z = this.latents(batch.sharedRng, batch);
    const mixing = this.styleMixing(batch.sharedRng, batch, batch.count);
    owned.push(z, ...(mixing ? [mixing.latents] : []));
    const noiseSeed = rng.int(SEED_RANGE);
    return this.differentiate(this.gNames, batch.count, () => {
      const fakes = this.generator.generate(z, {
        noiseSeed,
        training: true,
        ...(mixing && { styleMixing: mixing }),
      });
      const fakeScores = this.score(fakes);
      const value =
        r.loss === 'wgan-gp' ? wganGeneratorLoss(fakeScores) : nonSaturatingGeneratorLoss(fakeScores);
      return { value, metrics: { fakeScore: fakeScores } };
    });
  }

  private pathLengthPhase(rng: Rng, batch: StepBatch, owned: tf.Tensor[]): PhaseResult {
    const pl = this.recipe.pathLength!;
    const count = Math.max(1, Math.floor(batch.count / pl.batchShrink));
    const z = this.latents(batch.sharedRng, batch, count);
    const mixing = this.styleMixing(batch.sharedRng, batch, count);
    owned.push(z, ...(mixing ? [mixing.latents] : []));
    const noiseSeed = rng.int(SEED_RANGE);
    const plNoiseSeed = rng.int(SEED_RANGE);
    const g = this.generator;
    return this.differentiate(this.gNames, count, () => {
      const ws = g.mapLatents!(z, { training: true, ...(mixing && { styleMixing: mixing }) });
      const terms = pathLengthPenalty((w) => g.synthesize!(w, { noiseSeed, training: true }), ws, {
        mean: this.plMean!,
        decay: pl.decay,
        noiseSeed: plNoiseSeed,
      });
      return {
        value: tf.mul(terms.penalty, pl.weight * pl.interval) as tf.Scalar,
        metrics: { pathLength: terms.lengths },
      };
    });
  }

  afterPhase(phase: Readonly<PhaseSpec>, _step: number, outcome: PhaseOutcome): void {
    if (phase.name !== 'Greg' || !this.plMean) return;
    // The running mean moves towards the workers' averaged path length: identical in every worker.
    const decay = this.recipe.pathLength!.decay;
    const mean = this.plMean;
    tf.tidy(() => mean.assign(tf.add(mean, tf.mul(tf.sub(outcome.metrics.pathLength!, mean), decay))));
  }

  dispose(): void {
    this.plMean?.dispose();
    void this.store?.close();
  }
}

registerTrainingTask<GanTaskConfig>(GAN_TASK_KIND, () => new GanTask());
