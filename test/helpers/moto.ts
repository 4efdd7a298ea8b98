// moto's server (Secrets Manager + STS) on a free loopback port, one per test file, seeded with the
// real AWS SDK. Used by the fetch integration tests, the e2e tests and the benchmarks.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { fileURLToPath } from "node:url";
import {
  CreateSecretCommand,
  PutSecretValueCommand,
  SecretsManagerClient,
} from "@aws-sdk/client-secrets-manager";
import { shippedEntrypoint } from "../../scripts/build.mjs";
import { getFreePort } from "../e2e/harness/ports.ts";
import { spawnManaged, waitForHttp } from "../e2e/harness/process.ts";

export interface Moto {
  endpoint: string;
  port: number;
  /** A client with test credentials, for seeding. */
  client: SecretsManagerClient;
  createSecret(
    name: string,
    value: string | Uint8Array,
    opts?: { region?: string },
  ): Promise<{ arn: string; versionId: string }>;
  putSecretValue(
    name: string,
    value: string,
    stages?: string[],
    opts?: { region?: string },
  ): Promise<{ versionId: string }>;
  /** Forgets every secret (moto's /moto-api/reset). */
  reset(): Promise<void>;
  stop(): Promise<void>;
}

export const TEST_CREDENTIALS = { AWS_ACCESS_KEY_ID: "testing", AWS_SECRET_ACCESS_KEY: "testing" };

export async function startMoto(
  opts: {
    region?: string;
    log?: (l: string) => void;
    /** The address moto listens on (default 127.0.0.1; "0.0.0.0" lets a real node's pods reach it). */
    listenHost?: string;
  } = {},
): Promise<Moto> {
  const dir = await mkdtemp(join(tmpdir(), "sm-injector-moto-"));
  const port = await getFreePort();
  const proc = spawnManaged(
    "moto",
    "moto_server",
    ["-H", opts.listenHost ?? "127.0.0.1", "-p", String(port)],
    {
      logPath: join(dir, "moto.log"),
      env: { ...process.env, ...TEST_CREDENTIALS, MOTO_ALLOW_NONEXISTENT_REGION: "true" },
      ...(opts.log && { log: opts.log }),
    },
  );
  const endpoint = `http://127.0.0.1:${port}`;
  await waitForHttp(`${endpoint}/moto-api/`, { process: proc, timeoutMs: 30_000 });
  const region = opts.region ?? "us-east-1";
  const clients = new Map<string, SecretsManagerClient>();
  const clientFor = (r: string) => {
    let c = clients.get(r);
    if (!c) {
      c = new SecretsManagerClient({
        region: r,
        endpoint,
        credentials: { accessKeyId: "testing", secretAccessKey: "testing" },
      });
      clients.set(r, c);
    }
    return c;
  };
  const client = clientFor(region);
  return {
    endpoint,
    port,
    client,
    async createSecret(name, value, o = {}) {
      const out = await clientFor(o.region ?? region).send(
        new CreateSecretCommand({
          Name: name,
          ...(typeof value === "string" ? { SecretString: value } : { SecretBinary: value }),
        }),
      );
      return { arn: out.ARN as string, versionId: out.VersionId as string };
    },
    async putSecretValue(name, value, stages, o = {}) {
      const out = await clientFor(o.region ?? region).send(
        new PutSecretValueCommand({
          SecretId: name,
          SecretString: value,
          ...(stages && { VersionStages: stages }),
        }),
      );
      return { versionId: out.VersionId as string };
    },
    async reset() {
      const res = await fetch(`${endpoint}/moto-api/reset`, { method: "POST" });
      if (!res.ok) throw new Error(`moto reset failed: HTTP ${res.status}`);
    },
    async stop() {
      for (const c of clients.values()) c.destroy();
      await proc.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Runs `fn` with process.env replaced by `env` (restored afterwards), for running the init
 * container's code in-process: the AWS SDK reads its credentials chain, region and endpoints from
 * process.env. Calls must not overlap (node:test runs a file's tests one at a time).
 */
export async function withProcessEnv<T>(env: NodeJS.ProcessEnv, fn: () => Promise<T>): Promise<T> {
  const saved = { ...process.env };
  for (const k of Object.keys(process.env)) delete process.env[k];
  Object.assign(process.env, env);
  try {
    return await fn();
  } finally {
    for (const k of Object.keys(process.env)) delete process.env[k];
    Object.assign(process.env, saved);
  }
}

/** What a run of `sm-injector fetch` printed, and its exit code. */
export interface FetchRun {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout's JSON log lines. */
  logs: Array<Record<string, unknown>>;
  /** Wall time of the run (for the CLI: from spawn to exit). */
  ms: number;
}

function collect(): { stream: NodeJS.WritableStream; text(): string } {
  const chunks: Buffer[] = [];
  const stream = new Writable({
    write(chunk: Buffer | string, _enc, cb) {
      chunks.push(Buffer.from(chunk));
      cb();
    },
  });
  return { stream, text: () => Buffer.concat(chunks).toString("utf8") };
}

function parseLogs(stdout: string): Array<Record<string, unknown>> {
  return stdout
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/**
 * The environment of an init container that talks to `endpoint` (moto, or a fault proxy in front
 * of it) with the test keys, with no AWS config files, plus `extra`. Keys whose value is undefined
 * in `extra` are removed (e.g. AWS_ACCESS_KEY_ID for the IRSA and Pod Identity flows).
 */
export function fetchEnv(endpoint: string, home: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: home,
    AWS_CONFIG_FILE: join(home, "no-aws-config"),
    AWS_SHARED_CREDENTIALS_FILE: join(home, "no-aws-credentials"),
    AWS_EC2_METADATA_DISABLED: "true",
    AWS_REGION: "us-east-1",
    AWS_ENDPOINT_URL: endpoint,
    ...TEST_CREDENTIALS,
  };
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

/**
 * An init container's run in `dir`: a fresh output directory, a termination-log file (as the
 * kubelet creates one) and the environment of `spec` writing there against `endpoint`.
 */
export async function initContainerEnv(
  endpoint: string,
  dir: string,
  spec: Record<string, unknown>,
): Promise<{ env: NodeJS.ProcessEnv; outputDir: string; terminationLog: string }> {
  const outputDir = join(dir, "out");
  await mkdir(outputDir, { recursive: true });
  const terminationLog = join(dir, "termination-log");
  await writeFile(terminationLog, "");
  const env = fetchEnv(endpoint, dir, {
    SM_INJECTOR_SPEC: JSON.stringify({ ...spec, outputDir }),
    SM_INJECTOR_TERMINATION_LOG: terminationLog,
    TMPDIR: dir,
  });
  return { env, outputDir, terminationLog };
}

/** Runs the real runFetch in this process with `env` as its (and the AWS SDK's) environment. */
export async function runFetchInProcess(env: NodeJS.ProcessEnv): Promise<FetchRun> {
  const { runFetch } = await import("../../src/fetch/index.ts");
  const out = collect();
  const err = collect();
  const t0 = performance.now();
  const code = await withProcessEnv(env, () => runFetch({ env, stdout: out.stream, stderr: err.stream }));
  const stdout = out.text();
  return { code, stdout, stderr: err.text(), logs: parseLogs(stdout), ms: performance.now() - t0 };
}

const REPO = fileURLToPath(new URL("../../", import.meta.url));

let shipped: string[] | undefined;
/**
 * How the image starts `fetch` from what `npm run build` put in dist/: from the start-up snapshot
 * when this node can start from dist/fetch.snapshot.blob, else a plain start (scripts/build.mjs).
 */
export function shippedFetchCommand(): string[] {
  if (!existsSync(join(REPO, "dist", "sm-injector.mjs")))
    throw new Error("dist/sm-injector.mjs is missing; run `npm run build` first (npm test does)");
  shipped ??= shippedEntrypoint(join(REPO, "dist"));
  return [...shipped, "fetch"];
}

/** Runs `fetch` as the image does (shippedFetchCommand) as a child process with exactly `env`. */
export function runFetchCli(
  env: NodeJS.ProcessEnv,
  opts: { timeoutMs?: number; command?: readonly string[] } = {},
): Promise<FetchRun> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const [node, ...args] = opts.command ?? shippedFetchCommand();
    const child = spawn(node as string, args, {
      cwd: REPO,
      env,
      stdio: ["ignore", "pipe", "pipe"],
      timeout: opts.timeoutMs ?? 60_000,
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (c: Buffer) => out.push(c));
    child.stderr.on("data", (c: Buffer) => err.push(c));
    child.on("error", reject);
    child.on("close", (code, signal) => {
      const stdout = Buffer.concat(out).toString("utf8");
      resolve({
        code: code ?? (signal ? 128 : 1),
        stdout,
        stderr: Buffer.concat(err).toString("utf8"),
        logs: parseLogs(stdout),
        ms: performance.now() - t0,
      });
    });
  });
}
