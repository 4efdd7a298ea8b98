import { EncodeError, type EnvVar } from "./types.ts";

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** POSIX-portable environment variable name: letters, digits and `_`, not starting with a digit. */
export function isValidEnvName(name: string): boolean {
  return ENV_NAME.test(name);
}

/** Checks that every encoder needs: valid, unique names and no NUL byte in any value. */
export function checkVars(vars: readonly EnvVar[]): void {
  const seen = new Set<string>();
  for (const { name, value } of vars) {
    if (!isValidEnvName(name)) {
      throw new EncodeError(
        name,
        `${JSON.stringify(name)} is not a valid environment variable name: use letters, digits and _, not starting with a digit`,
      );
    }
    if (seen.has(name)) {
      throw new EncodeError(
        name,
        `variable ${name} is defined more than once: give each variable its own name`,
      );
    }
    seen.add(name);
    if (value.includes(0)) {
      throw new EncodeError(
        name,
        `the value of ${name} contains a NUL byte, which no environment variable can carry: remove it from the secret, or store the secret base64-encoded`,
      );
    }
  }
}
