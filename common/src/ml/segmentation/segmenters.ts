// Rebuilding a segmenter from its architecture record (what a weights blob carries), e.g. on a site that
// receives weights to evaluate.
import type { ModelArchitecture, Segmenter } from '../model.js';
import { SWIN_PROFILES, buildSwinSegmenter, type SwinConfig } from './swin.js';
import { UNET_PROFILES, buildUNet, type UNetConfig } from './unet.js';

export type SegmenterName = 'unet' | 'swin';
export type SegmenterProfile = 'paper' | 'cpu' | 'tiny';

/** The architecture record of a named profile. */
export function segmenterArchitecture(name: SegmenterName, profile: SegmenterProfile): ModelArchitecture {
  const config = name === 'unet' ? UNET_PROFILES[profile] : SWIN_PROFILES[profile];
  return { name, config: structuredClone(config) as unknown as Record<string, unknown> };
}

/**
 * Builds the segmenter an architecture record describes. The config is checked by the builder itself (missing
 * or inconsistent fields throw); unknown names throw here.
 */
export function buildSegmenter(architecture: ModelArchitecture, seed: number): Segmenter {
  switch (architecture.name) {
    case 'unet':
      return buildUNet(requireFields<UNetConfig>(architecture, UNET_PROFILES.tiny), seed);
    case 'swin':
      return buildSwinSegmenter(requireFields<SwinConfig>(architecture, SWIN_PROFILES.tiny), seed);
    default:
      throw new Error(`buildSegmenter: unknown segmenter '${architecture.name}' (expected unet or swin)`);
  }
}

function requireFields<T extends object>(architecture: ModelArchitecture, example: T): T {
  const missing = Object.keys(example).filter((key) => !(key in architecture.config));
  if (missing.length > 0) {
    throw new Error(`buildSegmenter: ${architecture.name} config lacks ${missing.join(', ')}`);
  }
  return architecture.config as T;
}
