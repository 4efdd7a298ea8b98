// Where the output goes. One rule for every directory sm-injector mounts or writes to (the
// output-dir annotation, the webhook's default and allowed roots, the spec the init container
// reads), and one answer to "which path does the app read". Pure.
import type { OutputFormat } from "../envfile/types.ts";

/**
 * Absolute, segments of letters, digits and . _ - only, no trailing or repeated slash: so a path
 * needs no quoting in the wrapper script, and `dir.startsWith(`${root}/`)` means "under root".
 */
const ABSOLUTE_DIR = /^(\/[A-Za-z0-9._-]+)+$/;

/** Why `dir` is not a directory sm-injector accepts, or undefined when it is. */
export function absoluteDirProblem(dir: string): string | undefined {
  if (!ABSOLUTE_DIR.test(dir))
    return "must be an absolute path of letters, digits and . _ - (e.g. /run/sm-injector), without a trailing slash";
  if (dir.split("/").some((s) => s === "." || s === "..")) return "must not contain . or .. segments";
  return undefined;
}

/** Path of the file (or directory, for `files`) the app reads. */
export function outputPath(spec: { format: OutputFormat; outputDir: string; fileName: string }): string {
  return spec.format === "files" ? spec.outputDir : `${spec.outputDir}/${spec.fileName}`;
}
