import { isUtf8 } from "node:buffer";
import { checkVars } from "./names.ts";
import { EncodeError, type EnvVar } from "./types.ts";

/** `{"NAME":"value",...}` in the given order, UTF-8, with a final newline. */
export function renderJson(vars: readonly EnvVar[]): Buffer {
  checkVars(vars);
  const members: string[] = [];
  for (const { name, value } of vars) {
    if (!isUtf8(value)) {
      throw new EncodeError(
        name,
        `the value of ${name} is not valid UTF-8, which JSON cannot carry: use format files (exact bytes) or shell`,
      );
    }
    members.push(`${JSON.stringify(name)}:${JSON.stringify(value.toString("utf8"))}`);
  }
  return Buffer.from(`{${members.join(",")}}\n`, "utf8");
}
