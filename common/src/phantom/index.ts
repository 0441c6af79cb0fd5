// Phantom BraTS data: synthetic skull-stripped brains with a glioma, four sequences and a segmentation.
export { Tissue, type TissueClass } from './anatomy.js';
export {
  BRATS_NAMINGS,
  DEFAULT_PHANTOM_DIMS,
  generatePhantomCase,
  generatePhantomCaseWithTissue,
  tumourLabels,
  type BratsNaming,
  type PhantomCaseOptions,
  type PhantomCaseVolumes,
  type PhantomCaseWithTissue,
} from './generate.js';
export {
  bratsFileSuffixes,
  PHANTOM_GENERATOR_VERSION,
  PHANTOM_MANIFEST_FILE,
  phantomCaseId,
  phantomCaseSeed,
  phantomSiteSizes,
  writePhantomSites,
  type PhantomManifest,
  type PhantomManifestFile,
  type PhantomSitesOptions,
} from './sites.js';
