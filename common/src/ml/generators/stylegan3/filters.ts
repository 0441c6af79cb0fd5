// StyleGAN3's filter design and per-layer schedule (networks_stylegan3.SynthesisNetwork / SynthesisLayer,
// config T), computed exactly as the official code does:
// - cutoffs f_c grow geometrically from firstCutoff (2) to R/2 over the first numLayers − numCritical layers,
//   then stay at R/2 (the last numCritical layers are critically sampled);
// - stopbands f_t likewise from 2^2.1 to (R/2)·2^0.3; sampling rates s = 2^⌈log2 min(2 f_t, R)⌉; half-widths
//   max(f_t, s/2) − f_c; layer sizes s + 2·margin (10 px), the last two exactly R;
// - channels min(channelBase/2 / f_c, channelMax), the toRGB layer's output = image channels;
// - per layer the nonlinearity runs at max(s_in, s_out)·2, so up = that / s_in (2, or 4 where the rate doubles),
//   down = that / s_out; up/down filters are Kaiser-windowed sincs (scipy.signal.firwin) with 6·factor taps,
//   cutoff f_c and transition width 2·half-width; the padding makes the output exactly out_size.
// Filters are separable (config T: no radial filters).

export interface StyleGan3ScheduleSpec {
  resolution: number;
  imageChannels: number;
  /** Layers of the synthesis network excluding the input and toRGB (config T: 14). */
  numLayers: number;
  /** Critically sampled layers at the end (2). */
  numCritical: number;
  /** Cutoff of the first layer (2). */
  firstCutoff: number;
  /** Stopband of the first layer (2^2.1). */
  firstStopband: number;
  /** Last stopband relative to R/2 (2^0.3). */
  lastStopbandRel: number;
  /** Extra pixels on each side of the intermediate feature maps (10). */
  marginSize: number;
  channelBase: number;
  channelMax: number;
  /** Conv kernel of the layers (config T: 3; toRGB: 1). */
  convKernel: number;
  /** Taps per resampling factor (6). */
  filterSize: number;
  /** Oversampling of the nonlinearity (2). */
  lreluUpsampling: number;
}

export interface StyleGan3LayerPlan {
  index: number;
  name: string;
  isToRgb: boolean;
  isCritical: boolean;
  inChannels: number;
  outChannels: number;
  inSize: number;
  outSize: number;
  inSamplingRate: number;
  outSamplingRate: number;
  inCutoff: number;
  outCutoff: number;
  inHalfWidth: number;
  outHalfWidth: number;
  convKernel: number;
  up: number;
  down: number;
  /** Separable 1-D filters (undefined = one tap of 1: no filtering). */
  upFilter?: number[];
  downFilter?: number[];
  /** Padding before and after (both axes) applied with the upsampling. */
  padding: [number, number];
}

export interface StyleGan3Plan {
  /** The input layer (Fourier features). */
  input: { channels: number; size: number; samplingRate: number; bandwidth: number };
  layers: StyleGan3LayerPlan[];
}

/** Modified Bessel function of the first kind, order 0 (power series; converges fast for the β used here). */
export function besselI0(x: number): number {
  let sum = 1;
  let term = 1;
  const q = (x * x) / 4;
  for (let k = 1; k < 500; k++) {
    term *= q / (k * k);
    sum += term;
    if (term < sum * 1e-17) break;
  }
  return sum;
}

/** Symmetric Kaiser window (numpy.kaiser / scipy get_window(('kaiser', β), M, fftbins=False)). */
export function kaiserWindow(length: number, beta: number): number[] {
  if (length === 1) return [1];
  const denominator = besselI0(beta);
  return Array.from({ length }, (_, n) => {
    const r = (2 * n) / (length - 1) - 1;
    return besselI0(beta * Math.sqrt(Math.max(0, 1 - r * r))) / denominator;
  });
}

/** scipy.signal.kaiser_beta. */
export function kaiserBeta(attenuation: number): number {
  if (attenuation > 50) return 0.1102 * (attenuation - 8.7);
  if (attenuation > 21) return 0.5842 * (attenuation - 21) ** 0.4 + 0.07886 * (attenuation - 21);
  return 0;
}

/** scipy.signal.kaiser_atten: attenuation (dB) of a Kaiser FIR with numtaps and width (fraction of Nyquist). */
export function kaiserAttenuation(numtaps: number, width: number): number {
  return 2.285 * (numtaps - 1) * Math.PI * width + 7.95;
}

function sinc(x: number): number {
  if (x === 0) return 1;
  const px = Math.PI * x;
  return Math.sin(px) / px;
}

/**
 * scipy.signal.firwin(numtaps, cutoff, width=width, fs=fs): a low-pass windowed sinc with a Kaiser window whose
 * β meets the transition width, scaled to unit gain at DC.
 */
export function firwinLowpass(numtaps: number, cutoff: number, width: number, fs: number): number[] {
  const nyquist = fs / 2;
  const c = cutoff / nyquist;
  if (!(c > 0 && c < 1)) throw new Error(`firwin: cutoff ${cutoff} must lie in (0, fs/2 = ${nyquist})`);
  const beta = kaiserBeta(kaiserAttenuation(numtaps, width / nyquist));
  const window = kaiserWindow(numtaps, beta);
  const alpha = (numtaps - 1) / 2;
  const h = window.map((wv, n) => c * sinc(c * (n - alpha)) * wv);
  const sum = h.reduce((a, b) => a + b, 0);
  return h.map((v) => v / sum);
}

/** design_lowpass_filter: undefined for one tap (no filtering). */
export function designLowpassFilter(
  numtaps: number,
  cutoff: number,
  width: number,
  fs: number,
): number[] | undefined {
  if (numtaps === 1) return undefined;
  return firwinLowpass(numtaps, cutoff, width, fs);
}

/** The synthesis network's layer plan for a spec (see the header). */
export function planStyleGan3(spec: StyleGan3ScheduleSpec): StyleGan3Plan {
  const { resolution: R, numLayers, numCritical } = spec;
  if (!(numLayers > numCritical && numCritical >= 0)) {
    throw new Error(`stylegan3: need numLayers (${numLayers}) > numCritical (${numCritical}) ≥ 0`);
  }
  const lastCutoff = R / 2;
  const lastStopband = lastCutoff * spec.lastStopbandRel;
  const count = numLayers + 1;
  const exponents = Array.from({ length: count }, (_, i) => Math.min(i / (numLayers - numCritical), 1));
  const cutoffs = exponents.map((e) => spec.firstCutoff * (lastCutoff / spec.firstCutoff) ** e);
  const stopbands = exponents.map((e) => spec.firstStopband * (lastStopband / spec.firstStopband) ** e);
  const rates = stopbands.map((f) => 2 ** Math.ceil(Math.log2(Math.min(f * 2, R))));
  const halfWidths = stopbands.map((f, i) => Math.max(f, rates[i]! / 2) - cutoffs[i]!);
  const sizes = rates.map((s) => s + spec.marginSize * 2);
  sizes[count - 1] = R;
  sizes[count - 2] = R;
  const channels = cutoffs.map((f) => Math.round(Math.min(spec.channelBase / 2 / f, spec.channelMax)));
  channels[count - 1] = spec.imageChannels;

  const layers: StyleGan3LayerPlan[] = [];
  for (let idx = 0; idx < count; idx++) {
    const prev = Math.max(idx - 1, 0);
    const isToRgb = idx === numLayers;
    const isCritical = idx >= numLayers - numCritical;
    const convKernel = isToRgb ? 1 : spec.convKernel;
    const tmpRate = Math.max(rates[prev]!, rates[idx]!) * (isToRgb ? 1 : spec.lreluUpsampling);
    const up = Math.round(tmpRate / rates[prev]!);
    const down = Math.round(tmpRate / rates[idx]!);
    const upTaps = up > 1 && !isToRgb ? spec.filterSize * up : 1;
    const downTaps = down > 1 && !isToRgb ? spec.filterSize * down : 1;
    let padTotal = (sizes[idx]! - 1) * down + 1;
    padTotal -= (sizes[prev]! + convKernel - 1) * up;
    padTotal += upTaps + downTaps - 2;
    // Python's floor division (the total can be negative).
    const padLo = Math.floor((padTotal + up) / 2);
    layers.push({
      index: idx,
      name: isToRgb ? `L${idx}_torgb` : `L${idx}_${sizes[idx]}_${channels[idx]}`,
      isToRgb,
      isCritical,
      inChannels: channels[prev]!,
      outChannels: channels[idx]!,
      inSize: sizes[prev]!,
      outSize: sizes[idx]!,
      inSamplingRate: rates[prev]!,
      outSamplingRate: rates[idx]!,
      inCutoff: cutoffs[prev]!,
      outCutoff: cutoffs[idx]!,
      inHalfWidth: halfWidths[prev]!,
      outHalfWidth: halfWidths[idx]!,
      convKernel,
      up,
      down,
      upFilter: designLowpassFilter(upTaps, cutoffs[prev]!, halfWidths[prev]! * 2, tmpRate),
      downFilter: designLowpassFilter(downTaps, cutoffs[idx]!, halfWidths[idx]! * 2, tmpRate),
      padding: [padLo, padTotal - padLo],
    });
  }
  return {
    input: { channels: channels[0]!, size: sizes[0]!, samplingRate: rates[0]!, bandwidth: cutoffs[0]! },
    layers,
  };
}
