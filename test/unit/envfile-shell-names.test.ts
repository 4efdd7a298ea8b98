// Issue 11, case 10: variable names that sourcing `export NAME='value'` cannot set exactly (UID is
// read-only in bash, RANDOM is rewritten, OPTIND aborts dash...). The list in src/envfile/names.ts
// is held to the real shells here: every listed name fails in one of them, every other variable a
// shell knows of is set exactly by all of them. The shell format refuses the listed names; the
// dotenv format, read by python-dotenv and Node (which set any name), carries them.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import {
  EncodeError,
  renderDotenv,
  renderShellEnv,
  SHELL_REFUSED_NAMES,
  shellRefusal,
} from "../../src/envfile/index.ts";
import { parseWithNodeEnvFile, parseWithPythonDotenv, run } from "../helpers/roundtrip.ts";

/** The shells an app's entrypoint may source the file with; bash in POSIX mode behaves differently. */
const SHELLS: Record<string, [string, ...string[]]> = {
  bash: ["bash"],
  "bash --posix": ["bash", "--posix"],
  dash: ["dash"],
  "busybox sh": ["busybox", "sh"],
};
/** A word, a number (for number-only variables) and a value with a space. */
const VALUES = ["v", "7", "a b"];

/**
 * Every variable bash, dash and busybox sh define or give a meaning to: bash's manual ("Shell
 * Variables", 5.2 and 5.3), `compgen -v` and `set` of each shell at run time, plus ordinary names.
 */
const MANUAL = `BASH BASHOPTS BASHPID BASH_ALIASES BASH_ARGC BASH_ARGV BASH_ARGV0 BASH_CMDS BASH_COMMAND
BASH_COMPAT BASH_ENV BASH_EXECUTION_STRING BASH_LINENO BASH_LOADABLES_PATH BASH_MONOSECONDS BASH_REMATCH
BASH_SOURCE BASH_SUBSHELL BASH_TRAPSIG BASH_VERSINFO BASH_VERSION BASH_XTRACEFD CHILD_MAX COLUMNS
COMP_CWORD COMP_KEY COMP_LINE COMP_POINT COMP_TYPE COMP_WORDBREAKS COMP_WORDS COMPREPLY COPROC DIRSTACK
EMACS ENV EPOCHREALTIME EPOCHSECONDS EUID EXECIGNORE FCEDIT FIGNORE FUNCNAME FUNCNEST GLOBIGNORE
GLOBSORT GROUPS histchars HISTCMD HISTCONTROL HISTFILE HISTFILESIZE HISTIGNORE HISTSIZE HISTTIMEFORMAT
HOME HOSTFILE HOSTNAME HOSTTYPE IFS IGNOREEOF INPUTRC INSIDE_EMACS LANG LC_ALL LC_COLLATE LC_CTYPE
LC_MESSAGES LC_NUMERIC LC_TIME LINENO LINES MACHTYPE MAIL MAILCHECK MAILPATH MAPFILE OLDPWD OPTARG
OPTERR OPTIND OSTYPE PATH PIPESTATUS POSIXLY_CORRECT PPID PROMPT_COMMAND PROMPT_DIRTRIM PS0 PS1 PS2 PS3
PS4 PWD RANDOM READLINE_ARGUMENT READLINE_LINE READLINE_MARK READLINE_POINT REPLY SECONDS SHELL
SHELLOPTS SHLVL SRANDOM TERM TIMEFORMAT TMOUT TMPDIR UID _ CDPATH NLSPATH USER LOGNAME FPATH
KSH_VERSION DATABASE_URL JWT_SECRET_KEY AWS_ACCESS_KEY_ID`.split(/\s+/);

function available(): Array<[string, [string, ...string[]]]> {
  return Object.entries(SHELLS).filter(([, [cmd, ...args]]) => {
    const r = spawnSync(cmd, [...args, "-c", "exit 0"], { stdio: "ignore" });
    return r.error === undefined && r.status === 0;
  });
}

/** Names each shell itself defines (bash: compgen -v; the others: set). */
function shellDefinedNames(): string[] {
  const names = new Set<string>();
  const env = { PATH: process.env.PATH ?? "/usr/bin:/bin" };
  const bash = spawnSync("bash", ["-c", "compgen -v"], { env, encoding: "utf8" });
  for (const n of bash.stdout.split("\n")) if (n) names.add(n);
  for (const [cmd, ...args] of [["dash"], ["busybox", "sh"]] as const) {
    const r = spawnSync(cmd, [...args, "-c", "set"], { env, encoding: "utf8" });
    for (const line of r.stdout?.split("\n") ?? []) {
      const m = /^([A-Za-z_][A-Za-z0-9_]*)=/.exec(line);
      if (m?.[1]) names.add(m[1]);
    }
  }
  return [...names];
}

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "sm-injector-shell-names-"));
});
after(() => rm(dir, { recursive: true, force: true }));

/**
 * For each name, sources `export NAME='value'` then `export SM_AFTER='ok'` as an app's entrypoint
 * does (`. FILE && exec program`, one shell process each: a subshell would hide SHLVL's and
 * PIPESTATUS's behaviour) and reads the environment the exec'd program gets. Returns, per name,
 * undefined when that program sees both exactly, else what went wrong. Standard input is /dev/null
 * (a pipe there makes bash think it runs under sshd and read ~/.bashrc).
 */
async function failures(
  shell: [string, ...string[]],
  names: readonly string[],
  value: string,
): Promise<Map<string, string | undefined>> {
  const [cmd, ...args] = shell;
  const result = new Map<string, string | undefined>();
  let next = 0;
  const worker = async () => {
    while (next < names.length) {
      const i = next++;
      const name = names[i] as string;
      const f = join(dir, `env-${i}`);
      await writeFile(f, unchecked(name, value));
      const r = await run(cmd, [...args, "-c", '. "$1" && exec /usr/bin/env -0', "sh", f], {
        env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
      });
      const env = new Map<string, string>();
      for (const entry of r.stdout.toString("utf8").split("\0")) {
        const eq = entry.indexOf("=");
        if (eq > 0) env.set(entry.slice(0, eq), entry.slice(eq + 1));
      }
      result.set(
        name,
        env.get("SM_AFTER") !== "ok"
          ? `sourcing stopped before the next variable (exit ${r.code}): ${r.stderr.toString("utf8").trim()}`
          : env.get(name) !== value
            ? `the program sees ${JSON.stringify(env.get(name))}`
            : undefined,
      );
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
  return result;
}

/** The shell format's lines for a name it refuses, written by hand as the old encoder did. */
function unchecked(name: string, value: string): string {
  return `export ${name}='${value}'\nexport SM_AFTER='ok'\n`;
}

describe("the names a shell will not set exactly, proven with the real shells", () => {
  const shells = available();

  test("bash, dash and busybox sh are installed (CI installs them)", () => {
    assert.deepEqual(
      shells.map(([label]) => label),
      Object.keys(SHELLS),
    );
  });

  test("every refused name fails in at least one shell, for at least one value", async () => {
    const failed = new Set<string>();
    for (const [, shell] of shells)
      for (const value of VALUES)
        for (const [name, why] of await failures(shell, SHELL_REFUSED_NAMES, value))
          if (why) failed.add(name);
    const unproven = SHELL_REFUSED_NAMES.filter((n) => !failed.has(n));
    assert.deepEqual(unproven, [], "refused, but every shell sets them exactly");
  });

  test("every other name the shells know of is set exactly by every shell, whatever the value", async () => {
    const candidates = [...new Set([...MANUAL, ...shellDefinedNames()])].filter(
      (n) => shellRefusal(n) === undefined,
    );
    assert.ok(candidates.length > 80, String(candidates.length));
    const missed: string[] = [];
    for (const [label, shell] of shells)
      for (const value of VALUES)
        for (const [name, why] of await failures(shell, candidates, value))
          if (why) missed.push(`${name} in ${label} with ${JSON.stringify(value)}: ${why}`);
    assert.deepEqual(missed, [], "not refused, but a shell does not set them exactly");
  });

  test("the issue's names are on the list, with a reason", () => {
    for (const name of ["UID", "EUID", "PPID", "SHELLOPTS", "BASHOPTS", "BASH_VERSINFO", "RANDOM", "SECONDS"])
      assert.ok(shellRefusal(name), name);
    assert.equal(shellRefusal("DATABASE_URL"), undefined);
    assert.equal(shellRefusal("uid"), undefined, "names are case-sensitive");
  });
});

describe("the encoders", () => {
  test("the shell format refuses each listed name, naming the variable, the reason and the fix", () => {
    for (const name of SHELL_REFUSED_NAMES) {
      assert.throws(
        () => renderShellEnv([{ name, value: Buffer.from("SECRETVALUE") }]),
        (e: unknown) =>
          e instanceof EncodeError &&
          e.variable === name &&
          e.message.startsWith(`variable ${name} cannot be set by sourcing the shell file: `) &&
          e.message.includes("use format dotenv, json or files") &&
          !e.message.includes("SECRETVALUE"),
        name,
      );
    }
  });

  test("dotenv carries them: python-dotenv and node --env-file read UID, BASHOPTS and RANDOM exactly", async () => {
    const vars = ["UID", "BASHOPTS", "RANDOM", "OPTIND", "_"].map((name) => ({
      name,
      value: Buffer.from(`v-${name}`),
    }));
    const f = join(dir, "dotenv");
    await writeFile(f, renderDotenv(vars));
    const py = await parseWithPythonDotenv(f);
    const node = await parseWithNodeEnvFile(f);
    for (const { name } of vars) {
      assert.equal(py.get(name), `v-${name}`, `python-dotenv ${name}`);
      if (name !== "_") assert.equal(node.get(name), `v-${name}`, `node ${name}`);
    }
  });
});
