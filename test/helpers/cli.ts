// Runs a program, or the built `sm-injector` (dist/, `npm run build`), with text on stdin; for tests
// of commands that read a manifest from stdin or print to stdout.
import { spawn } from "node:child_process";
import { join } from "node:path";
import { REPO_ROOT } from "./tools.ts";

export const CLI = join(REPO_ROOT, "dist", "sm-injector.mjs");

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `command` to completion with `input` on stdin; never rejects for a non-zero exit. */
export function runWithInput(
  command: string,
  args: readonly string[],
  opts: { input?: string; cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: opts.cwd ?? REPO_ROOT,
      env: { ...process.env, ...opts.env },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c) => {
      stdout += c;
    });
    child.stderr.on("data", (c) => {
      stderr += c;
    });
    child.once("error", reject);
    child.once("close", (code) => resolve({ code: code ?? -1, stdout, stderr }));
    child.stdin.end(opts.input ?? "");
  });
}

/** `sm-injector ARGS…` from dist/. */
export function runCli(
  args: readonly string[],
  opts: { input?: string; cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<CliRun> {
  return runWithInput(process.execPath, [CLI, ...args], opts);
}
