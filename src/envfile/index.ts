import { renderDotenv } from "./dotenv.ts";
import { renderJson } from "./json.ts";
import { renderShellEnv } from "./shell.ts";
import type { EnvVar, OutputFormat } from "./types.ts";

export { renderDotenv } from "./dotenv.ts";
export { renderFiles } from "./files.ts";
export { renderJson } from "./json.ts";
export {
  ENV_NAME_PATTERN,
  isValidEnvName,
  SHELL_REFUSED_NAMES,
  shellRefusal,
  shellRefusalMessage,
} from "./names.ts";
export { renderShellEnv } from "./shell.ts";
export { EncodeError, type EnvVar, OUTPUT_FORMATS, type OutputFormat } from "./types.ts";

/** The single-file formats; `files` has its own shape, see renderFiles. */
export function render(format: Exclude<OutputFormat, "files">, vars: readonly EnvVar[]): Buffer {
  switch (format) {
    case "shell":
      return renderShellEnv(vars);
    case "dotenv":
      return renderDotenv(vars);
    case "json":
      return renderJson(vars);
  }
}
