/** A bad command line: reported without a stack trace, exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export function parseInteger(name: string, value: string, min = 0): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min)
    throw new UsageError(`${name} must be an integer ≥ ${min}, got "${value}"`);
  return n;
}

export function parseFraction(name: string, value: string): number {
  const n = Number(value);
  if (!(n >= 0 && n < 1)) throw new UsageError(`${name} must be a number in [0, 1), got "${value}"`);
  return n;
}
