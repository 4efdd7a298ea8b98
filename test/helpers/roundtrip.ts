// Reads env files back with the real consumers: POSIX shells, python-dotenv, Node's parser,
// pydantic-settings. Used by the encoder tests and by the fetch/e2e tests on files written by the
// real init container.
import { spawn, spawnSync } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

export type Shell = "dash" | "bash" | "busybox";

export const SHELLS: readonly Shell[] = ["dash", "bash", "busybox"];

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: Buffer;
}

/**
 * Runs a program to completion, collecting its output as bytes. Rejects only if it cannot start.
 * Standard input is /dev/null: a socket there makes bash think it runs under sshd and read ~/.bashrc.
 */
export function run(
  command: string,
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      env: options.env ?? process.env,
      stdio: ["ignore", "pipe", "pipe"],
      timeout: options.timeoutMs ?? 30_000,
    });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout.on("data", (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on("data", (chunk: Buffer) => stderr.push(chunk));
    child.on("error", reject);
    child.on("close", (code, signal) =>
      resolve({ code, signal, stdout: Buffer.concat(stdout), stderr: Buffer.concat(stderr) }),
    );
  });
}

function describeFailure(what: string, result: RunResult): string {
  const status = result.signal ? `signal ${result.signal}` : `exit code ${result.code}`;
  return `${what} failed with ${status}: ${result.stderr.toString("utf8").trim()}`;
}

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

function checkNames(names: readonly string[]): void {
  for (const name of names) {
    if (!NAME.test(name)) throw new Error(`not a valid variable name: ${JSON.stringify(name)}`);
  }
}

function shellCommand(shell: Shell): [string, string[]] {
  return shell === "busybox" ? ["busybox", ["sh"]] : [shell, []];
}

/** Whether `shell` can be run here (busybox is an optional Debian package). */
export function isShellAvailable(shell: Shell): boolean {
  const [command, args] = shellCommand(shell);
  const result = spawnSync(command, [...args, "-c", "exit 0"], { stdio: "ignore" });
  return result.error === undefined && result.status === 0;
}

/**
 * Sources `file` with `. FILE` in `shell` (as an app's entrypoint would) and returns the exact bytes
 * of each of `names` that is set afterwards; unset names are absent from the map. All names are read
 * in one shell process. Sourcing must succeed and print nothing on stderr. `env` is the whole
 * environment of the shell (default: only PATH).
 */
export async function sourceWithShell(
  shell: Shell,
  file: string,
  names: readonly string[],
  options: { env?: NodeJS.ProcessEnv } = {},
): Promise<Map<string, Buffer>> {
  checkNames(names);
  const outDir = await mkdtemp(join(tmpdir(), "sm-injector-source-"));
  try {
    // Each value goes to its own file, so any byte survives (no separators, no command
    // substitution eating trailing newlines).
    const script = [
      '. "$1" || exit 97',
      ...names.map(
        (name, i) => `if [ -n "\${${name}+set}" ]; then printf %s "$${name}" >"$2/${i}" || exit 98; fi`,
      ),
    ].join("\n");
    const [command, args] = shellCommand(shell);
    const result = await run(command, [...args, "-c", script, "sh", file, outDir], {
      env: options.env ?? { PATH: process.env.PATH ?? "/usr/bin:/bin" },
    });
    if (result.code !== 0 || result.stderr.length > 0)
      throw new Error(describeFailure(`${shell}: . ${file}`, result));
    const read = await Promise.all(
      names.map((_, i) =>
        readFile(join(outDir, String(i))).catch((error: NodeJS.ErrnoException) => {
          if (error.code === "ENOENT") return undefined;
          throw error;
        }),
      ),
    );
    const values = new Map<string, Buffer>();
    names.forEach((name, i) => {
      const value = read[i];
      if (value !== undefined) values.set(name, value);
    });
    return values;
  } finally {
    await rm(outDir, { recursive: true, force: true });
  }
}

/** The environment for Python children: the caller's, minus variables the test reads back. */
function pythonEnv(without: readonly string[] = []): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PYTHONUTF8: "1", PYTHONDONTWRITEBYTECODE: "1" };
  for (const name of without) delete env[name];
  return env;
}

// Values travel back as JSON with ensure_ascii, so stdout decoding cannot alter them.
const PYTHON_DOTENV = `
import json, sys
from dotenv import dotenv_values
print(json.dumps([list(dotenv_values(path).items()) for path in sys.argv[1:]]))
`;

/**
 * `dotenv_values(FILE)` for each file, in one Python process (interpolation on, as pydantic-settings
 * uses it). A key without `=` maps to null, as in python-dotenv.
 */
export async function parseFilesWithPythonDotenv(
  files: readonly string[],
): Promise<Array<Map<string, string | null>>> {
  if (files.length === 0) return [];
  const result = await run("python3", ["-c", PYTHON_DOTENV, ...files], { env: pythonEnv() });
  if (result.code !== 0) throw new Error(describeFailure("python-dotenv", result));
  const parsed = JSON.parse(result.stdout.toString("utf8")) as Array<Array<[string, string | null]>>;
  return parsed.map((entries) => new Map(entries));
}

/** `dotenv_values(FILE)` from python-dotenv. */
export async function parseWithPythonDotenv(file: string): Promise<Map<string, string | null>> {
  const [values] = await parseFilesWithPythonDotenv([file]);
  return values ?? new Map();
}

const PYTHON_DOTENV_SERVER = `
import json, sys
from dotenv import dotenv_values
for line in sys.stdin:
    try:
        reply = {"values": list(dotenv_values(json.loads(line)).items())}
    except Exception as error:
        reply = {"error": repr(error)}
    print(json.dumps(reply), flush=True)
`;

/** A long-lived python-dotenv for property tests: parse() costs a millisecond, not a Python start. */
export interface PythonDotenvParser {
  parse(file: string): Promise<Map<string, string | null>>;
  close(): Promise<void>;
}

export function startPythonDotenvParser(): PythonDotenvParser {
  const child = spawn("python3", ["-c", PYTHON_DOTENV_SERVER], {
    env: pythonEnv(),
    stdio: ["pipe", "pipe", "pipe"],
  });
  const waiting: Array<{ resolve: (line: string) => void; reject: (error: Error) => void }> = [];
  let stderr = "";
  let buffered = "";
  let exited: Error | undefined;
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
    stderr = (stderr + chunk).slice(-10_000);
  });
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
    buffered += chunk;
    for (let newline = buffered.indexOf("\n"); newline !== -1; newline = buffered.indexOf("\n")) {
      const line = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      waiting.shift()?.resolve(line);
    }
  });
  const closed = new Promise<void>((resolve) => {
    child.on("close", (code, signal) => {
      exited = new Error(`python-dotenv parser exited (${signal ?? code}): ${stderr.trim()}`);
      for (const request of waiting.splice(0)) request.reject(exited);
      resolve();
    });
  });
  child.on("error", (error) => {
    exited = error;
    for (const request of waiting.splice(0)) request.reject(error);
  });
  return {
    parse(file) {
      if (exited) return Promise.reject(exited);
      return new Promise<string>((resolve, reject) => {
        waiting.push({ resolve, reject });
        child.stdin.write(`${JSON.stringify(file)}\n`);
      }).then((line) => {
        const reply = JSON.parse(line) as { values?: Array<[string, string | null]>; error?: string };
        if (reply.values === undefined) throw new Error(`python-dotenv failed on ${file}: ${reply.error}`);
        return new Map(reply.values);
      });
    },
    close() {
      child.stdin.end();
      return closed;
    },
  };
}

/**
 * The environment a Node program sees when started as `node --env-file=FILE` with an otherwise
 * empty environment (so every variable comes from the file).
 */
export async function parseWithNodeEnvFile(file: string): Promise<Map<string, string>> {
  const result = await run(
    process.execPath,
    [`--env-file=${file}`, "-e", "process.stdout.write(JSON.stringify(process.env))"],
    { env: {} },
  );
  if (result.code !== 0) throw new Error(describeFailure("node --env-file", result));
  const env = JSON.parse(result.stdout.toString("utf8")) as Record<string, string>;
  return new Map(Object.entries(env));
}

const PYDANTIC_SETTINGS = `
import json, sys
from pydantic_settings import BaseSettings, SettingsConfigDict
source, path, names = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
config = SettingsConfigDict(case_sensitive=True, extra="ignore")
config["secrets_dir" if source == "secrets_dir" else "env_file"] = path
Settings = type("Settings", (BaseSettings,), {
    "__annotations__": {name: str | None for name in names},
    **{name: None for name in names},
    "model_config": config,
})
print(json.dumps(Settings().model_dump()))
`;

/**
 * Reads `names` as `str` fields of a pydantic-settings BaseSettings, from a `secrets_dir` (one file
 * per variable) or an `env_file` (dotenv). Missing fields are null. Names must not start with `_`
 * (pydantic treats those as private attributes).
 */
export async function readWithPydanticSettings(
  source: { secretsDir: string } | { envFile: string },
  names: readonly string[],
): Promise<Map<string, string | null>> {
  checkNames(names);
  const [kind, path] =
    "secretsDir" in source ? ["secrets_dir", source.secretsDir] : ["env_file", source.envFile];
  const result = await run("python3", ["-c", PYDANTIC_SETTINGS, kind, path, JSON.stringify(names)], {
    env: pythonEnv(names),
  });
  if (result.code !== 0) throw new Error(describeFailure("pydantic-settings", result));
  const values = JSON.parse(result.stdout.toString("utf8")) as Record<string, string | null>;
  return new Map(Object.entries(values));
}
