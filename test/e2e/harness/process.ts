import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import { setTimeout as delay } from "node:timers/promises";

/** A child process in its own process group, output appended to a log file. */
export interface ManagedProcess {
  readonly name: string;
  readonly pid: number;
  readonly logPath: string;
  readonly removeOnOrphan: string | undefined;
  readonly child: ChildProcess;
  /** Resolves when the process has exited (reaped, output drained). */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  isRunning(): boolean;
  /** SIGTERM to the process group, SIGKILL after `timeoutMs` (default 10 s). Idempotent. */
  stop(timeoutMs?: number): Promise<void>;
  /** The last `lines` lines of the log file (for error messages). */
  logTail(lines?: number): string;
}

export interface SpawnOptions {
  logPath: string;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Receives every output line (prefixed with the process name). */
  log?: (line: string) => void;
  /**
   * A directory to remove if this process exits without stopping the child (signal, crash,
   * SIGKILL); e.g. the scratch directory on /dev/shm, which would otherwise hold memory.
   */
  removeOnOrphan?: string;
}

const live = new Set<ManagedProcess>();
let hooksInstalled = false;
let signalHooks = true;

/**
 * For a program that handles SIGINT/SIGTERM/SIGHUP itself (an orderly stop, e.g. the demo): the
 * managed processes are then only killed by the exit hook, when that program exits. Call it before
 * the first spawnManaged().
 */
export function leaveSignalsToCaller(): void {
  signalHooks = false;
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
}

function killAllSync(): void {
  const dirs = new Set<string>();
  for (const p of live) {
    killGroup(p.pid, "SIGKILL");
    if (p.removeOnOrphan) dirs.add(p.removeOnOrphan);
  }
  live.clear();
  for (const dir of dirs) {
    try {
      rmSync(dir, { recursive: true, force: true, maxRetries: 3, retryDelay: 50 });
    } catch {
      // best effort
    }
  }
}

/** Makes sure no child outlives this process: on exit, SIGINT, SIGTERM and SIGHUP. */
function installExitHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on("exit", killAllSync);
  if (!signalHooks) return;
  const signals: [NodeJS.Signals, number][] = [
    ["SIGINT", 2],
    ["SIGTERM", 15],
    ["SIGHUP", 1],
  ];
  for (const [signal, num] of signals) {
    process.once(signal, () => {
      killAllSync();
      process.exit(128 + num);
    });
  }
}

/** Spawns `command` detached (own process group) with stdout+stderr appended to `opts.logPath`. */
export function spawnManaged(
  name: string,
  command: string,
  args: string[],
  opts: SpawnOptions,
): ManagedProcess {
  installExitHooks();
  const out = createWriteStream(opts.logPath, { flags: "a" });
  out.write(`$ ${command} ${args.join(" ")}\n`);
  const child = spawn(command, args, {
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  // If this process dies without running its exit hooks (SIGKILL, OOM), a detached watchdog kills
  // the child's process group, so children never outlive the test process.
  const watchdog =
    child.pid === undefined
      ? undefined
      : spawn(
          "sh",
          [
            "-c",
            'while kill -0 "$1" 2>/dev/null && kill -0 "$2" 2>/dev/null; do sleep 1; done; ' +
              'kill -0 "$1" 2>/dev/null && exit 0; kill -KILL "-$2" 2>/dev/null; sleep 0.2; ' +
              'if [ -n "$3" ]; then rm -rf -- "$3"; fi',
            "sm-injector-watchdog",
            String(process.pid),
            String(child.pid),
            opts.removeOnOrphan ?? "",
          ],
          { detached: true, stdio: "ignore" },
        );
  watchdog?.on("error", () => {});
  watchdog?.unref();
  let running = true;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once("error", (err) => {
      running = false;
      out.write(`[harness] ${name} failed to start: ${err.message}\n`);
      resolve({ code: null, signal: null });
    });
    child.once("exit", () => {
      running = false;
    });
    // "close": exited and its output fully read (so the log file is complete).
    child.once("close", (code, signal) => {
      running = false;
      resolve({ code, signal });
    });
  });
  const forward = (stream: NodeJS.ReadableStream | null) => {
    if (stream === null) return;
    let pending = "";
    stream.setEncoding("utf8");
    stream.on("data", (chunk: string) => {
      if (!out.writableEnded) out.write(chunk);
      if (opts.log) {
        pending += chunk;
        const lines = pending.split("\n");
        pending = lines.pop() ?? "";
        for (const line of lines) opts.log(`[${name}] ${line}`);
      }
    });
  };
  forward(child.stdout);
  forward(child.stderr);

  let stopping: Promise<void> | undefined;
  const managed: ManagedProcess = {
    name,
    pid: child.pid ?? -1,
    logPath: opts.logPath,
    removeOnOrphan: opts.removeOnOrphan,
    child,
    exited,
    isRunning: () => running,
    stop(timeoutMs = 10_000) {
      stopping ??= (async () => {
        if (running && child.pid !== undefined) {
          killGroup(child.pid, "SIGTERM");
          const timer = setTimeout(() => {
            if (child.pid !== undefined) killGroup(child.pid, "SIGKILL");
          }, timeoutMs);
          await exited;
          clearTimeout(timer);
          // Descendants left in the group (none expected) must not survive either.
          killGroup(child.pid, "SIGKILL");
        }
        live.delete(managed);
        await new Promise<void>((resolve) => out.end(resolve));
      })();
      return stopping;
    },
    logTail(lines = 30) {
      try {
        return readFileSync(opts.logPath, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
      } catch {
        return "";
      }
    },
  };
  if (child.pid !== undefined) live.add(managed);
  void exited.then(() => {
    if (watchdog?.pid !== undefined) killGroup(watchdog.pid, "SIGKILL");
    if (!stopping) live.delete(managed);
  });
  return managed;
}

export interface WaitForHttpOptions {
  /** TLS: CA bundle, client certificate and key (PEM). */
  ca?: string;
  cert?: string;
  key?: string;
  /** Overall deadline (default 60 s). */
  timeoutMs?: number;
  /** Stop waiting (with its log tail in the error) if this process exits. */
  process?: ManagedProcess;
  /** HTTP status that means ready (default 200). */
  status?: number;
}

function probe(url: string, opts: WaitForHttpOptions): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const tls = u.protocol === "https:";
    const req = (tls ? https.request : http.request)(
      u,
      { method: "GET", timeout: 2000, ...(tls ? { ca: opts.ca, cert: opts.cert, key: opts.key } : {}) },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => {
          body += c;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
    req.end();
  });
}

/** Polls `url` until it answers `opts.status` (200), backing off from 50 ms to 250 ms. */
export async function waitForHttp(url: string, opts: WaitForHttpOptions = {}): Promise<void> {
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  const want = opts.status ?? 200;
  let wait = 50;
  let last = "no answer yet";
  for (;;) {
    if (opts.process && !opts.process.isRunning()) {
      const r = await opts.process.exited;
      throw new Error(
        `${opts.process.name} exited (code ${r.code}, signal ${r.signal}) before ${url} was ready; ` +
          `log ${opts.process.logPath}:\n${opts.process.logTail()}`,
      );
    }
    try {
      const r = await probe(url, opts);
      if (r.status === want) return;
      last = `HTTP ${r.status}: ${r.body.slice(0, 2000)}`;
    } catch (err) {
      last = (err as Error).message;
    }
    if (Date.now() > deadline) {
      const tail = opts.process ? `\nlog ${opts.process.logPath}:\n${opts.process.logTail()}` : "";
      throw new Error(`timed out waiting for ${url} (last: ${last})${tail}`);
    }
    await delay(wait);
    wait = Math.min(wait * 2, 250);
  }
}
