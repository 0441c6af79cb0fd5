/** A case that cannot be used, with the case and the file at fault named so a user can fix it. */
export class CaseError extends Error {
  constructor(
    readonly caseId: string,
    readonly file: string | undefined,
    readonly reason: string,
  ) {
    super(file ? `case ${caseId}: ${file}: ${reason}` : `case ${caseId}: ${reason}`);
    this.name = 'CaseError';
  }
}
