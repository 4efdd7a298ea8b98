import { EncodeError, type EnvVar } from "./types.ts";

/**
 * POSIX-portable environment variable name: letters, digits and `_`, not starting with a digit.
 * The one rule for a variable name, at admission (annotations, prefixes) and at fetch time.
 */
export const ENV_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*$/;

export function isValidEnvName(name: string): boolean {
  return ENV_NAME_PATTERN.test(name);
}

/*
 * Names that `. FILE` cannot set to an arbitrary value, so that the app does not see NAME=value
 * exactly. Found by sourcing `export NAME='v'` (and '7', 'a b') followed by another variable in
 * bash 5.2, bash --posix, dash 0.5.12 and busybox 1.35 sh, and reading the environment of the
 * program the shell then execs; test/unit/envfile-shell-names.test.ts runs those shells over this
 * whole list and over every other variable bash defines, so the list is proven, not guessed.
 * Only bash refuses names; dash refuses a non-number in OPTIND; busybox sh sets every name.
 */
const BASH_READ_ONLY =
  "read-only in bash: bash prints an error and the app starts without it, and bash --posix (and sh when it is bash) stops reading the file there, dropping every later variable";
const SET_BY_BASH =
  "bash keeps this variable for itself: it ignores the assignment or replaces the value (a counter, a clock, a random number, a process id or an array that is never exported)";
const NUMBER_ONLY =
  "a number-only shell variable: for any other value dash and bash stop reading the file there, dropping every later variable";

const SHELL_REFUSALS: ReadonlyMap<string, string> = new Map([
  ...["BASHOPTS", "BASH_VERSINFO", "EUID", "PPID", "SHELLOPTS", "UID"].map(
    (n) => [n, BASH_READ_ONLY] as const,
  ),
  ...[
    "BASHPID",
    "BASH_ALIASES",
    "BASH_ARGC",
    "BASH_ARGV",
    "BASH_CMDS",
    "BASH_COMMAND",
    "BASH_LINENO",
    "BASH_SOURCE",
    "BASH_SUBSHELL",
    "DIRSTACK",
    "EPOCHREALTIME",
    "EPOCHSECONDS",
    "FUNCNAME",
    "GROUPS",
    "HISTCMD",
    "LINENO",
    "RANDOM",
    "SECONDS",
    "SHLVL",
    "SRANDOM",
    "_",
  ].map((n) => [n, SET_BY_BASH] as const),
  ["OPTIND", NUMBER_ONLY],
]);

/** Every name shellRefusal refuses (for tests and docs). */
export const SHELL_REFUSED_NAMES: readonly string[] = [...SHELL_REFUSALS.keys()];

/**
 * Why sourcing `export NAME='value'` in a POSIX shell or bash would not give the app NAME=value
 * exactly, or undefined when it would. The one list of such names: admission (compile.ts) and the
 * shell encoder both ask here.
 */
export function shellRefusal(name: string): string | undefined {
  return SHELL_REFUSALS.get(name);
}

/** The EncodeError message for a name shellRefusal refuses: the variable, why, and the fix. */
export function shellRefusalMessage(name: string, reason: string): string {
  return `variable ${name} cannot be set by sourcing the shell file: ${reason}; give it another name (env-from's rename or prefix), or use format dotenv, json or files`;
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
