// BraTS label schemes across challenge years, mapped to the canonical {NCR, ED, ET} (codes 1, 2, 3).

export type LabelScheme = '2013' | '2017' | '2023';
export const LABEL_SCHEMES: readonly LabelScheme[] = ['2013', '2017', '2023'];

interface SchemeDefinition {
  description: string;
  /** raw label value -> canonical code (0 background, 1 NCR, 2 ED, 3 ET) */
  toCanonical: ReadonlyMap<number, number>;
}

export const SCHEME_DEFINITIONS: Record<LabelScheme, SchemeDefinition> = {
  '2013': {
    description: 'BraTS 2013-2016: 1 necrosis, 2 edema, 3 non-enhancing (merged into NCR/NET), 4 enhancing',
    toCanonical: new Map([
      [0, 0],
      [1, 1],
      [2, 2],
      [3, 1],
      [4, 3],
    ]),
  },
  '2017': {
    description: 'BraTS 2017-2022: 1 NCR/NET, 2 edema, 4 enhancing',
    toCanonical: new Map([
      [0, 0],
      [1, 1],
      [2, 2],
      [4, 3],
    ]),
  },
  '2023': {
    description: 'BraTS 2023+: 1 NCR, 2 edema, 3 enhancing',
    toCanonical: new Map([
      [0, 0],
      [1, 1],
      [2, 2],
      [3, 3],
    ]),
  },
};

export function isLabelScheme(value: string): value is LabelScheme {
  return (LABEL_SCHEMES as readonly string[]).includes(value);
}

/**
 * Guess the scheme from the label values present when the naming does not tell: 3 and 4 together only occur in
 * 2013-2016 data, 4 alone in 2017-2022, 3 alone in 2023. Returns undefined when the values cannot decide.
 */
export function schemeFromLabelValues(present: Iterable<number>): LabelScheme | undefined {
  const values = new Set(present);
  const has3 = values.has(3);
  const has4 = values.has(4);
  if (has3 && has4) return '2013';
  if (has4) return '2017';
  if (has3) return '2023';
  return undefined;
}

/** A 256-entry lookup table raw -> canonical, with 255 marking values the scheme does not know. */
export function canonicalLookup(scheme: LabelScheme): Uint8Array {
  const table = new Uint8Array(256).fill(UNKNOWN_LABEL);
  for (const [raw, canonical] of SCHEME_DEFINITIONS[scheme].toCanonical) table[raw] = canonical;
  return table;
}
export const UNKNOWN_LABEL = 255;
