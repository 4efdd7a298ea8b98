// The entry of the start-up snapshot (dist/fetch.snapshot.blob, built by `node scripts/build.mjs
// --snapshot`): the init container's code — the AWS SDK, pino, zod/mini, our fetch — loaded and
// compiled once at build time, so a pod start deserializes a heap instead of reading and compiling
// ~900 KiB of JavaScript. Run as the image's entry point:
//
//   node --snapshot-blob /app/fetch.snapshot.blob /app/sm-injector.mjs fetch
//
// Node then calls the main function below instead of running the script; `fetch` runs from the
// snapshot, and every other command (webhook, inject, help, ...) loads the script as a plain start
// would.
//
// At build time, after the modules load, warmUp() runs one whole fetch (spec, plan, clients,
// GetSecretValue through the SDK's middleware, signing and parsing, resolution, rendering, the
// atomic write, the termination message, the log) so that V8 saves that code compiled. It talks to
// no network: the requests go to an in-memory handler, with made-up static credentials and every
// setting given, so no credential provider, config file or AWS environment variable is read; the
// builder runs with an empty environment (scripts/build.mjs). test/integration/fetch-snapshot.test.ts
// audits the blob.
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join, resolve } from "node:path";
import { Readable, Writable } from "node:stream";
import { startupSnapshot } from "node:v8";
import type { SecretsManagerClientConfig } from "@aws-sdk/client-secrets-manager";
import { FETCH_SPEC_ENV } from "../contract/fetch-spec.ts";
import { TERMINATION_LOG_ENV } from "../contract/fetched-versions.ts";
import { runFetch } from "../fetch/index.ts";

/** Whether argv asks for the init container's `fetch` (not `fetch --help`, which the CLI answers). */
function isFetchRun(argv: readonly string[]): boolean {
  return argv[2] === "fetch" && argv.length === 3;
}

/** The in-memory handler's answers, by SecretId: GetSecretValue responses in the service's JSON protocol. */
const WARM_UP_SECRETS: Record<string, string> = {
  "warm-up": "warm-up",
  "warm-up/json": JSON.stringify({ username: "warm-up", password: "warm-up", port: 5432 }),
};

function warmUpAnswer(secretId: string): string {
  return JSON.stringify({
    ARN: `arn:aws:secretsmanager:us-east-1:000000000000:secret:${secretId}-AbCdEf`,
    Name: secretId,
    VersionId: "00000000-0000-4000-8000-000000000000",
    SecretString: WARM_UP_SECRETS[secretId],
    VersionStages: ["AWSCURRENT"],
    CreatedDate: 0,
  });
}

/**
 * The SecretId of a GetSecretValue request body. The SDK hands the handler bytes (a Uint8Array whose
 * string methods it warns about): read them as bytes.
 */
function requestedSecretId(body: unknown): string {
  const bytes = body as Uint8Array;
  const text =
    typeof body === "string"
      ? body
      : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8");
  return (JSON.parse(text) as { SecretId: string }).SecretId;
}

/**
 * What every Secrets Manager client of the warm-up gets (FetchIO.clientConfig). Made when the
 * warm-up runs, never held by the module: the clock offset in it would keep the build time in the blob.
 */
const warmUpClientConfig = (): SecretsManagerClientConfig => ({
  region: "us-east-1",
  credentials: { accessKeyId: "WARMUPWARMUPWARMUP00", secretAccessKey: "warm-up" },
  maxAttempts: 1,
  retryMode: "standard",
  useFipsEndpoint: false,
  useDualstackEndpoint: false,
  defaultsMode: "standard",
  userAgentAppId: "warm-up",
  // The default provider reads os.platform() and os.release(): loaded at build time, `os` would
  // keep the build machine's uname in the blob (scripts/build.mjs defers it, and fails the build if
  // it is used here). The run-time client builds its User-Agent from the host it runs on.
  defaultUserAgentProvider: async () => [["warm-up"]],
  // Else the SDK looks for a service endpoint in the AWS config file (through fs/promises, which
  // loads `os` too); the endpoint rules still run.
  ignoreConfiguredEndpointUrls: true,
  disableClockSkewCorrection: false,
  authSchemePreference: [],
  // Signed as of 1970-01-01: the signer caches the key it derives under the signing date, which
  // then holds no build date.
  systemClockOffset: -Date.now(),
  requestHandler: {
    handle: async (request: { body?: unknown }) => ({
      response: {
        statusCode: 200,
        reason: "OK",
        headers: { "content-type": "application/x-amz-json-1.1" },
        body: Readable.from([Buffer.from(warmUpAnswer(requestedSecretId(request.body)))]),
      },
    }),
  },
});

/**
 * One whole `fetch` at build time, as a pod start runs it — the spec read and checked, the plan,
 * a client per region, GetSecretValue through the SDK's middleware, signing and parsing, a JSON key,
 * an expanded secret and a template resolved, the file rendered and written, the versions recorded,
 * the log lines — against the in-memory handler, into a directory of the builder's own that is
 * removed afterwards.
 */
async function warmUp(): Promise<void> {
  const out = join(process.cwd(), "warm-up-output");
  mkdirSync(out);
  const terminationLog = join(out, "termination-log");
  writeFileSync(terminationLog, "");
  const sink = new Writable({ write: (_chunk, _encoding, done) => done() });
  // Its problems, if any, for the build's error: they hold made-up names and values only.
  let problems = "";
  const stderr = new Writable({
    write: (chunk, _encoding, done) => {
      problems += String(chunk);
      done();
    },
  });
  // Node's shared pool of small Buffers keeps the bytes of the last ones made (the request, its
  // signature and date, the invocation id): with no pool, each warm-up Buffer is its own allocation,
  // collected before the heap is saved. (Zeroing the pool instead would zero the constants modules
  // made from it when they loaded.)
  const poolSize = Buffer.poolSize;
  Buffer.poolSize = 0;
  try {
    const code = await runFetch({
      env: {
        [FETCH_SPEC_ENV]: JSON.stringify({
          version: 1,
          format: "shell",
          outputDir: out,
          fileName: "env",
          fileMode: 0o400,
          timeoutSeconds: 30,
          entries: [
            { kind: "value", source: { secretId: "warm-up", region: "us-east-1" }, env: "WARM_UP" },
            { kind: "value", source: { secretId: "warm-up/json" }, key: "password", env: "WARM_UP_KEY" },
            { kind: "expand", source: { secretId: "warm-up/json" }, prefix: "W_" },
            {
              kind: "template",
              env: "WARM_UP_URL",
              parts: [
                "postgres://",
                { source: { secretId: "warm-up/json" }, key: "username", filter: "urlencode" },
                "@db:",
                { source: { secretId: "warm-up/json" }, key: "port" },
              ],
            },
          ],
        }),
        [TERMINATION_LOG_ENV]: terminationLog,
        AWS_REGION: "us-east-1",
      },
      stdout: sink,
      stderr,
      clientConfig: warmUpClientConfig(),
    });
    if (code !== 0) throw new Error(`the snapshot's warm-up fetch exited ${code}:\n${problems}`);
  } finally {
    Buffer.poolSize = poolSize;
    rmSync(out, { recursive: true, force: true });
  }
}

if (startupSnapshot.isBuildingSnapshot()) void warmUp();

startupSnapshot.setDeserializeMainFunction(() => {
  if (isFetchRun(process.argv)) {
    runFetch({ env: process.env, stdout: process.stdout, stderr: process.stderr }).then((code) => {
      process.exitCode = code;
    });
    return;
  }
  const entry = process.argv[1];
  if (entry === undefined) {
    process.stderr.write("sm-injector: started from the snapshot without the entry script\n");
    process.exitCode = 2;
    return;
  }
  // A deserialized main function cannot import(); require() loads the ES module entry (it has no
  // top-level await) through the normal loader, whose own dynamic imports then work.
  const script = resolve(entry);
  createRequire(script)(script);
});
