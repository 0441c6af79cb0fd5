// What the site tells the coordinator about a failure must not carry private details: no paths of the state or
// data folder (their names often hold hospital or patient names), no BraTS subject ids. Handlers map errors from
// private data to fixed codes and texts themselves (details go to the site's log); this is the last net, applied
// to every job:failed message.

/** BraTS 2020/2021/2023 subject ids (BraTS20_Training_001, BraTS2021_00000, BraTS-GLI-00000-000). */
const BRATS_ID = /BraTS(?:20_(?:Training|Validation)_\d+|\d{4}_\d+|-[A-Z]+-\d+-\d+)/gi;
/** file: URLs, Windows drive paths, and POSIX absolute paths that start a token (not the path part of a URL). */
const FILE_URL = /file:\/\/[^\s'"`)]*/gi;
const WINDOWS_PATH = /\b[A-Za-z]:\\[^\s'"`)]*/g;
const POSIX_PATH = /(?<![\w.:/~-])\/[^\s'"`),;]+/g;

/**
 * `message` with the given private locations (e.g. the data and state folders, replaced wherever they appear, even
 * with spaces in them), every absolute path and file: URL replaced by '<path>', and BraTS subject ids by
 * '<subject>'.
 */
export function scrubPrivateDetails(message: string, privateLocations: readonly string[] = []): string {
  let text = message;
  for (const location of [...privateLocations]
    .filter((l) => l.length > 1)
    .sort((a, b) => b.length - a.length)) {
    text = text.split(location).join('<path>');
  }
  return text
    .replace(FILE_URL, '<path>')
    .replace(WINDOWS_PATH, '<path>')
    .replace(POSIX_PATH, '<path>')
    .replace(/<path>(?:[/\\][^\s'"`),;]*)+/g, '<path>')
    .replace(BRATS_ID, '<subject>');
}
