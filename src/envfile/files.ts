import { checkVars } from "./names.ts";
import type { EnvVar } from "./types.ts";

/** One file per variable (pydantic-settings `secrets_dir`, Docker secrets): exact bytes, no newline added. */
export function renderFiles(vars: readonly EnvVar[]): Array<{ fileName: string; content: Buffer }> {
  checkVars(vars);
  // Valid names contain no `/` and are never `.` or `..`, so each is a safe file name.
  return vars.map(({ name, value }) => ({ fileName: name, content: Buffer.from(value) }));
}
