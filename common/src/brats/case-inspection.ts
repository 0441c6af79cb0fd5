// What `fedsynth inspect` reports about one case: grids, intensities, brain size, label scheme and counts.
import { volumeRange } from '../nifti/index.js';
import type { LoadedCase } from './case-loader.js';
import { SCHEME_DEFINITIONS } from './label-schemes.js';
import { MODALITIES, type CanonicalCounts } from './modalities.js';

export interface VolumeReport {
  file: string;
  dims: number[];
  spacing: number[];
  datatype: string;
  min: number;
  max: number;
  affineSource: string;
}

export interface CaseReport {
  caseId: string;
  dir: string;
  naming: string;
  cohort?: string;
  labelled: boolean;
  scheme?: { name: string; source: string; description: string };
  modalities: Record<string, VolumeReport>;
  seg?: VolumeReport;
  /** voxels where any of the four sequences is > 0 */
  brainVoxels: number;
  labels?: { raw: Record<string, number>; canonical: CanonicalCounts };
}

export function inspectCase(loaded: LoadedCase): CaseReport {
  const report = (vol: LoadedCase['images']['t1']): VolumeReport => {
    const { min, max } = volumeRange(vol);
    return {
      file: vol.file,
      dims: vol.header.dims,
      spacing: vol.header.pixdim.slice(0, 3).map(Math.abs),
      datatype: vol.header.datatype,
      min,
      max,
      affineSource: vol.header.affineSource,
    };
  };
  const modalities = Object.fromEntries(MODALITIES.map((m) => [m, report(loaded.images[m])]));
  const arrays = MODALITIES.map((m) => loaded.images[m].data);
  let brainVoxels = 0;
  const n = arrays[0]!.length;
  for (let i = 0; i < n; i++) {
    if (arrays[0]![i]! > 0 || arrays[1]![i]! > 0 || arrays[2]![i]! > 0 || arrays[3]![i]! > 0) brainVoxels++;
  }
  return {
    caseId: loaded.id,
    dir: loaded.files.dir,
    naming: loaded.files.naming,
    cohort: loaded.files.cohort,
    labelled: loaded.labels !== undefined,
    scheme: loaded.scheme
      ? {
          name: loaded.scheme,
          source: loaded.schemeSource!,
          description: SCHEME_DEFINITIONS[loaded.scheme].description,
        }
      : undefined,
    modalities,
    seg: loaded.seg
      ? {
          file: loaded.seg.file,
          dims: loaded.seg.header.dims,
          spacing: loaded.seg.header.pixdim.slice(0, 3).map(Math.abs),
          datatype: loaded.seg.header.datatype,
          min: loaded.seg.min,
          max: loaded.seg.max,
          affineSource: loaded.seg.header.affineSource,
        }
      : undefined,
    brainVoxels,
    labels: loaded.canonicalCounts
      ? { raw: loaded.rawLabelCounts!, canonical: loaded.canonicalCounts }
      : undefined,
  };
}
