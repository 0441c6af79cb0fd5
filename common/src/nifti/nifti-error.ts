/** A file that is not a NIfTI image this reader supports; `reason` says why in words a user can act on. */
export class NiftiFormatError extends Error {
  override readonly name = 'NiftiFormatError';

  constructor(
    readonly file: string,
    readonly reason: string,
  ) {
    super(`${file}: ${reason}`);
  }
}
