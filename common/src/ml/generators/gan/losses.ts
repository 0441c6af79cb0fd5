// GAN losses and regularisers (Karras et al.'s formulations, as in the official ProGAN / StyleGAN2 code):
// non-saturating logistic losses, R1 with lazy-regularisation scaling, WGAN-GP with the drift term, and StyleGAN2's
// path-length regulariser. All return scalars to be differentiated by tf.variableGrads; call them inside its
// function (or inside tf.tidy).
//
// Gradients of gradients: R1, WGAN-GP and path length differentiate ‖∇_x D‖ (or ∇_w G) w.r.t. the weights.
// tfjs-core registers no gradient for comparison ops (Greater, ...), which LeakyRelu's and Relu6's gradients use
// as masks, so the second backward pass fails with "gradient function not found for Greater" on every backend.
// Their gradient is zero wherever it exists; registerHigherOrderGradients() (called on import) registers exactly
// that. Other gaps of tfjs-core 4.22, on every backend (not wasm-specific; see README): no gradient of
// DepthwiseConv2dNativeBackpropInput/Filter (depthwise convs in D), of AvgPoolGrad / MaxPoolGrad (pooling in D),
// of ResizeNearestNeighborGrad / ResizeBilinearGrad (tf.image resizing in D), of Conv2DBackpropFilter (only needed
// for third derivatives). Use conv2d, reshape+mean pooling and broadcast upsampling in D instead (layers.ts).
import * as tf from '@tensorflow/tfjs';

const COMPARISONS = ['Greater', 'GreaterEqual', 'Less', 'LessEqual', 'Equal', 'NotEqual'] as const;

/** Registers zero gradients for comparison ops that have none (idempotent; never replaces an existing one). */
export function registerHigherOrderGradients(): string[] {
  const registered: string[] = [];
  for (const kernelName of COMPARISONS) {
    if (tf.getGradient(kernelName) !== undefined) continue;
    tf.registerGradient({
      kernelName,
      inputsToSave: ['a', 'b'],
      gradFunc: (_dy, saved) => {
        const [a, b] = saved as tf.Tensor[];
        return { a: () => tf.zerosLike(a!), b: () => tf.zerosLike(b!) };
      },
    });
    registered.push(kernelName);
  }
  return registered;
}

registerHigherOrderGradients();

/** A discriminator as the losses see it: images -> scores [N] or [N, 1]. */
export type ScoreFunction = (images: tf.Tensor4D) => tf.Tensor;

/** Scores [N] or [N, 1] -> [N]. */
export function flattenScores(scores: tf.Tensor): tf.Tensor1D {
  if (scores.rank === 1) return scores as tf.Tensor1D;
  if (scores.rank === 2 && scores.shape[1] === 1) return tf.reshape(scores, [-1]);
  throw new Error(`discriminator scores must be [N] or [N, 1], got [${scores.shape}]`);
}

// ------------------------------------------------------------------------------------------------------------
// Non-saturating logistic loss (StyleGAN 1/2/3)

/** G: E[softplus(−D(G(z)))] = −E[log σ(D(G(z)))]. */
export function nonSaturatingGeneratorLoss(fakeScores: tf.Tensor): tf.Scalar {
  return tf.mean(tf.softplus(tf.neg(flattenScores(fakeScores))));
}

/** D: E[softplus(D(G(z)))] + E[softplus(−D(x))] = −E[log(1 − σ(D(G(z))))] − E[log σ(D(x))]. */
export function nonSaturatingDiscriminatorLoss(realScores: tf.Tensor, fakeScores: tf.Tensor): tf.Scalar {
  return tf.add(
    tf.mean(tf.softplus(flattenScores(fakeScores))),
    tf.mean(tf.softplus(tf.neg(flattenScores(realScores)))),
  );
}

/** ‖∇_x Σ D(x)‖² per sample [N] (each sample's score depends on its own image only, up to minibatch stddev). */
export function squaredGradientNorms(score: ScoreFunction, images: tf.Tensor4D): tf.Tensor1D {
  const gradient = tf.grad((x: tf.Tensor) => tf.sum(flattenScores(score(x as tf.Tensor4D))))(images);
  return tf.sum(tf.square(gradient), [1, 2, 3]);
}

export interface R1Options {
  /** R1 weight γ. */
  gamma: number;
  /**
   * Lazy regularisation interval k: the penalty runs every k D steps and is multiplied by k so its expected
   * contribution is unchanged (StyleGAN2 §3.1); 1 when R1 is added to every D step. Default 1.
   */
  interval?: number;
}

/** R1 (Mescheder et al. 2018): γ/2 · E‖∇_x D(x)‖² on reals, times the lazy interval. */
export function r1Penalty(score: ScoreFunction, reals: tf.Tensor4D, options: R1Options): tf.Scalar {
  const interval = options.interval ?? 1;
  return tf.mul(tf.mean(squaredGradientNorms(score, reals)), (options.gamma / 2) * interval) as tf.Scalar;
}

// ------------------------------------------------------------------------------------------------------------
// WGAN-GP (ProGAN)

/** G: −E[D(G(z))]. */
export function wganGeneratorLoss(fakeScores: tf.Tensor): tf.Scalar {
  return tf.neg(tf.mean(flattenScores(fakeScores))) as tf.Scalar;
}

export interface WganGpOptions {
  /** Gradient penalty weight λ (default 10). */
  lambda?: number;
  /** Drift penalty ε (default 0.001; ProGAN's wgan_epsilon). */
  driftEpsilon?: number;
  /** The target gradient norm (default 1; ProGAN's wgan_target). */
  target?: number;
  /** Per-sample mixing factors α ~ U(0, 1) [N] (draw them with a seed for determinism). */
  alpha: tf.Tensor1D;
}

export interface WganGpTerms {
  /** E[D(G(z))] − E[D(x)] + gradientPenalty + drift: D's loss. */
  loss: tf.Scalar;
  /** λ/target² · E(‖∇D(x̂)‖ − target)² on x̂ = x + α(G(z) − x). */
  gradientPenalty: tf.Scalar;
  /** ε · E[D(x)²]. */
  drift: tf.Scalar;
  /** E[D(x)] − E[D(G(z))]: the critic's Wasserstein estimate. */
  wasserstein: tf.Scalar;
}

/** D's WGAN-GP loss with ProGAN's drift term; reals and fakes are scored separately, as ProGAN does. */
export function wganGpDiscriminatorLoss(
  score: ScoreFunction,
  reals: tf.Tensor4D,
  fakes: tf.Tensor4D,
  options: WganGpOptions,
): WganGpTerms {
  const lambda = options.lambda ?? 10;
  const epsilon = options.driftEpsilon ?? 0.001;
  const target = options.target ?? 1;
  const realScores = flattenScores(score(reals));
  const fakeScores = flattenScores(score(fakes));
  const alpha = tf.reshape(options.alpha, [-1, 1, 1, 1]);
  const mixed = tf.add(reals, tf.mul(tf.sub(fakes, reals), alpha)) as tf.Tensor4D;
  // A tiny ε inside the root keeps its gradient finite should a gradient vanish exactly (a dead critic).
  const norms = tf.sqrt(tf.add(squaredGradientNorms(score, mixed), 1e-12));
  const gradientPenalty = tf.mul(
    tf.mean(tf.square(tf.sub(norms, target))),
    lambda / (target * target),
  ) as tf.Scalar;
  const drift = tf.mul(tf.mean(tf.square(realScores)), epsilon) as tf.Scalar;
  const wasserstein = tf.sub(tf.mean(realScores), tf.mean(fakeScores)) as tf.Scalar;
  const loss = tf.add(tf.add(tf.neg(wasserstein), gradientPenalty), drift) as tf.Scalar;
  return { loss, gradientPenalty, drift, wasserstein };
}

// ------------------------------------------------------------------------------------------------------------
// Path-length regularisation (StyleGAN2 §3.2)

export interface PathLengthOptions {
  /** The running mean a (the task's buffer), a scalar. */
  mean: tf.Tensor;
  /** Decay of the running mean (default 0.01). */
  decay?: number;
  /** Seed of the image-space noise y ~ N(0, I)/√(HW). */
  noiseSeed: number;
}

export interface PathLengthTerms {
  /** E(‖J_wᵀ y‖ − a')² with a' = lerp(a, E‖J_wᵀ y‖, decay) of this batch: multiply by weight · interval. */
  penalty: tf.Scalar;
  /** ‖J_wᵀ y‖ per sample [N] (their mean updates the running mean after the all-reduce). */
  lengths: tf.Tensor1D;
}

/**
 * StyleGAN2's path-length penalty for images = synthesize(ws): lengths = √(mean over style layers of
 * Σ_w (∂(Σ images·y)/∂w)²), y ~ N(0, I)/√(H·W). As in the official code the penalty uses the running mean moved
 * towards this batch's mean (and differentiates through it); the task's persistent mean is then updated from the
 * workers' averaged lengths, so it stays identical in every worker (the official code keeps one per GPU).
 */
export function pathLengthPenalty(
  synthesize: (ws: tf.Tensor3D) => tf.Tensor4D,
  ws: tf.Tensor3D,
  options: PathLengthOptions,
): PathLengthTerms {
  const decay = options.decay ?? 0.01;
  const gradient = tf.grad((w: tf.Tensor) => {
    const images = synthesize(w as tf.Tensor3D);
    const [, h, wide] = images.shape;
    const noise = tf.div(
      tf.randomNormal(images.shape, 0, 1, 'float32', options.noiseSeed),
      Math.sqrt(h * wide),
    );
    return tf.sum(tf.mul(images, noise));
  })(ws);
  const lengths = tf.sqrt(tf.mean(tf.sum(tf.square(gradient), 2), 1)) as tf.Tensor1D;
  const batchMean = tf.mean(lengths);
  // Not detached: the official code differentiates through this batch's mean as well.
  const mean = tf.add(options.mean, tf.mul(tf.sub(batchMean, options.mean), decay));
  const penalty = tf.mean(tf.square(tf.sub(lengths, mean))) as tf.Scalar;
  return { penalty, lengths };
}
