// Finds BraTS cases in a folder: 2018-2021 naming (`<case>_t1.nii.gz`), 2023+ naming (`<case>-t1n.nii.gz`,
// all cohorts), or a user mapping modality -> file-name pattern for data that is not named the BraTS way.
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { MODALITIES, type Modality } from './modalities.js';

export type BratsNamingStyle = '2020' | '2021' | 'legacy' | '2023' | 'mapped';

export interface BratsCaseFiles {
  id: string;
  dir: string;
  naming: BratsNamingStyle;
  /** 2023 cohort (GLI, MEN, MET, PED, SSA, ...) when the naming carries one */
  cohort?: string;
  images: Record<Modality, string>;
  seg?: string;
}

/** A case that could not be assembled from the files found; discovery keeps going past it. */
export interface DiscoveryProblem {
  caseId: string;
  dir: string;
  reason: string;
}

export interface DiscoveryResult {
  cases: BratsCaseFiles[];
  problems: DiscoveryProblem[];
}

/** modality (t1, t1ce, t2, flair, seg) -> file-name glob (`*` and `?`) inside each case folder */
export type ModalityMap = Partial<Record<Modality | 'seg', string>>;

type Role = Modality | 'seg';
const NIFTI_NAME = /\.nii(\.gz)?$/i;
const SUFFIX_2023: Record<string, Role> = { t1n: 't1', t1c: 't1ce', t2w: 't2', t2f: 'flair', seg: 'seg' };
const SUFFIX_LEGACY: Record<string, Role> = { t1: 't1', t1ce: 't1ce', t2: 't2', flair: 'flair', seg: 'seg' };
const NAME_2023 = /^(BraTS-([A-Za-z]+(?:-[A-Za-z]+)*)-\d+-\d+)-(t1n|t1c|t2w|t2f|seg)\.nii(\.gz)?$/i;
const NAME_LEGACY = /^(.+?)_(t1|t1ce|t2|flair|seg)\.nii(\.gz)?$/i;
const MAX_DEPTH = 4;

/** Code-point order: the same on every machine, unlike localeCompare. */
const byCodePoint = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

interface NamedFile {
  caseId: string;
  role: Role;
  style: BratsNamingStyle;
  cohort?: string;
  file: string;
}

export function classifyBratsFileName(name: string): Omit<NamedFile, 'file'> | undefined {
  const m23 = NAME_2023.exec(name);
  if (m23) {
    return {
      caseId: m23[1]!,
      role: SUFFIX_2023[m23[3]!.toLowerCase()]!,
      style: '2023',
      cohort: m23[2]!.toUpperCase(),
    };
  }
  const legacy = NAME_LEGACY.exec(name);
  if (legacy) {
    const caseId = legacy[1]!;
    const style: BratsNamingStyle = /^BraTS20_/i.test(caseId)
      ? '2020'
      : /^BraTS2021_/i.test(caseId)
        ? '2021'
        : 'legacy';
    return { caseId, role: SUFFIX_LEGACY[legacy[2]!.toLowerCase()]!, style };
  }
  return undefined;
}

async function listNiftiFiles(root: string, depth = 0): Promise<string[]> {
  if (depth === 0) {
    const info = await stat(root).catch(() => undefined);
    if (!info) throw new Error(`${root}: no such folder`);
    if (!info.isDirectory())
      throw new Error(`${root}: not a folder (give the folder that holds the case files)`);
  }
  const entries = await readdir(root, { withFileTypes: true });
  const out: string[] = [];
  for (const entry of entries.sort((a, b) => byCodePoint(a.name, b.name))) {
    if (entry.name.startsWith('.')) continue;
    const full = path.join(root, entry.name);
    if (entry.isDirectory() && depth < MAX_DEPTH) out.push(...(await listNiftiFiles(full, depth + 1)));
    else if (entry.isFile() && NIFTI_NAME.test(entry.name)) out.push(full);
  }
  return out;
}

/** Discover cases named the BraTS way anywhere below `root` (flat or one folder per case). */
export async function discoverBratsCases(root: string): Promise<DiscoveryResult> {
  const files = await listNiftiFiles(root);
  const byCase = new Map<string, NamedFile[]>();
  for (const file of files) {
    const named = classifyBratsFileName(path.basename(file));
    if (!named) continue;
    const list = byCase.get(named.caseId) ?? [];
    list.push({ ...named, file });
    byCase.set(named.caseId, list);
  }
  const result: DiscoveryResult = { cases: [], problems: [] };
  for (const [caseId, named] of [...byCase].sort(([a], [b]) => byCodePoint(a, b))) {
    const dir = path.dirname(named[0]!.file);
    const roles = new Map<Role, string[]>();
    for (const n of named) roles.set(n.role, [...(roles.get(n.role) ?? []), n.file]);
    const duplicated = [...roles].filter(([, list]) => list.length > 1);
    if (duplicated.length > 0) {
      const [role, list] = duplicated[0]!;
      result.problems.push({ caseId, dir, reason: `more than one ${role} file: ${list.join(', ')}` });
      continue;
    }
    const missing = MODALITIES.filter((m) => !roles.has(m));
    if (missing.length > 0) {
      result.problems.push({ caseId, dir, reason: `missing modality ${missing.join(', ')}` });
      continue;
    }
    result.cases.push({
      id: caseId,
      dir,
      naming: named[0]!.style,
      cohort: named[0]!.cohort,
      images: Object.fromEntries(MODALITIES.map((m) => [m, roles.get(m)![0]!])) as Record<Modality, string>,
      seg: roles.get('seg')?.[0],
    });
  }
  return result;
}

function globToRegExp(glob: string): RegExp {
  const escaped = glob
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${escaped}$`, 'i');
}

/**
 * Parse a modality map given as `t1=*_T1w.nii.gz,t1ce=*_T1Gd.nii.gz,...` or as the path of a JSON file holding
 * the same keys. t1, t1ce, t2 and flair are required; seg is optional.
 */
export async function parseModalityMap(spec: string): Promise<ModalityMap> {
  let entries: [string, string][];
  if (spec.trim().endsWith('.json')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(await readFile(spec, 'utf8'));
    } catch (error) {
      throw new Error(`modality map ${spec}: ${(error as Error).message}`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new Error(`modality map ${spec}: expected a JSON object of modality -> file pattern`);
    }
    entries = Object.entries(parsed).map(([k, v]) => [k, String(v)]);
  } else {
    entries = spec.split(',').map((part) => {
      const eq = part.indexOf('=');
      if (eq < 1) throw new Error(`modality map: "${part}" is not of the form modality=pattern`);
      return [part.slice(0, eq).trim(), part.slice(eq + 1).trim()];
    });
  }
  const map: ModalityMap = {};
  for (const [key, pattern] of entries) {
    const role = key.toLowerCase();
    if (![...MODALITIES, 'seg'].includes(role)) {
      throw new Error(`modality map: unknown modality "${key}" (expected t1, t1ce, t2, flair, seg)`);
    }
    if (!pattern) throw new Error(`modality map: empty pattern for ${key}`);
    map[role as Role] = pattern;
  }
  const missing = MODALITIES.filter((m) => !map[m]);
  if (missing.length > 0) throw new Error(`modality map: no pattern for ${missing.join(', ')}`);
  return map;
}

/**
 * Discover cases through a modality map: every folder below `root` (or `root` itself) holding a file for each
 * mapped modality is a case, its id the folder name.
 */
export async function discoverMappedCases(root: string, map: ModalityMap): Promise<DiscoveryResult> {
  const files = await listNiftiFiles(root);
  const byDir = new Map<string, string[]>();
  for (const file of files) {
    const dir = path.dirname(file);
    byDir.set(dir, [...(byDir.get(dir) ?? []), path.basename(file)]);
  }
  const patterns = Object.entries(map).map(([role, glob]) => [role as Role, globToRegExp(glob!)] as const);
  const result: DiscoveryResult = { cases: [], problems: [] };
  for (const [dir, names] of [...byDir].sort(([a], [b]) => byCodePoint(a, b))) {
    const caseId = path.basename(dir);
    const found = new Map<Role, string[]>();
    for (const [role, re] of patterns)
      found.set(
        role,
        names.filter((n) => re.test(n)),
      );
    if ([...found.values()].every((list) => list.length === 0)) continue; // not a case folder
    const ambiguous = [...found].find(([, list]) => list.length > 1);
    if (ambiguous) {
      result.problems.push({
        caseId,
        dir,
        reason: `pattern for ${ambiguous[0]} matches ${ambiguous[1].length} files: ${ambiguous[1].join(', ')}`,
      });
      continue;
    }
    const missing = MODALITIES.filter((m) => found.get(m)!.length === 0);
    if (missing.length > 0) {
      result.problems.push({
        caseId,
        dir,
        reason: `missing modality ${missing.join(', ')} (by the modality map)`,
      });
      continue;
    }
    const seg = found.get('seg')?.[0];
    result.cases.push({
      id: caseId,
      dir,
      naming: 'mapped',
      images: Object.fromEntries(MODALITIES.map((m) => [m, path.join(dir, found.get(m)![0]!)])) as Record<
        Modality,
        string
      >,
      seg: seg ? path.join(dir, seg) : undefined,
    });
  }
  return result;
}

export async function discoverCases(root: string, map?: ModalityMap): Promise<DiscoveryResult> {
  return map ? discoverMappedCases(root, map) : discoverBratsCases(root);
}
