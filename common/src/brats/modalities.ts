// The four MRI sequences of a BraTS case plus the annotation, and the canonical tumour labels used everywhere.

export const MODALITIES = ['t1', 't1ce', 't2', 'flair'] as const;
export type Modality = (typeof MODALITIES)[number];

/** Canonical tumour classes (the 2023 codes): every label scheme is mapped to these on load. */
export const CanonicalLabel = { background: 0, ncr: 1, ed: 2, et: 3 } as const;
export type CanonicalLabelName = 'NCR' | 'ED' | 'ET';
export const CANONICAL_LABEL_NAMES: Record<1 | 2 | 3, CanonicalLabelName> = { 1: 'NCR', 2: 'ED', 3: 'ET' };

export interface CanonicalCounts {
  NCR: number;
  ED: number;
  ET: number;
}
