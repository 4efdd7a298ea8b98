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
// At build time, after the modules load, warmUp() runs the code every fetch runs first (the spec's
// schema, a Secrets Manager client's set-up and one GetSecretValue through the SDK's middleware,
// signing and parsing) so that V8 saves it compiled. It talks to no network: the request goes to an
// in-memory handler, with made-up static credentials and every setting given, so no credential
// provider, config file or environment variable is read; the builder runs with an empty environment
// (scripts/build.mjs). test/integration/fetch-snapshot.test.ts audits the blob.
import { createRequire } from "node:module";
import { resolve } from "node:path";
import { Readable } from "node:stream";
import { startupSnapshot } from "node:v8";
import { GetSecretValueCommand, SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import { FetchSpecSchema } from "../contract/fetch-spec.ts";
import { runFetch } from "../fetch/index.ts";

/** Whether argv asks for the init container's `fetch` (not `fetch --help`, which the CLI answers). */
function isFetchRun(argv: readonly string[]): boolean {
  return argv[2] === "fetch" && argv.length === 3;
}

/** The answer of the in-memory handler: a GetSecretValue response in the service's JSON protocol. */
const WARM_UP_ANSWER = JSON.stringify({
  ARN: "arn:aws:secretsmanager:us-east-1:000000000000:secret:warm-up-AbCdEf",
  Name: "warm-up",
  VersionId: "00000000-0000-4000-8000-000000000000",
  SecretString: "warm-up",
  VersionStages: ["AWSCURRENT"],
  CreatedDate: 0,
});

async function warmUp(): Promise<void> {
  FetchSpecSchema.parse({
    version: 1,
    format: "shell",
    outputDir: "/run/sm-injector",
    fileName: "env",
    fileMode: 0o400,
    timeoutSeconds: 30,
    entries: [
      { kind: "value", source: { secretId: "warm-up", region: "us-east-1" }, env: "WARM_UP" },
      { kind: "expand", source: { secretId: "warm-up" }, prefix: "W_" },
    ],
  });
  const client = new SecretsManagerClient({
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
      handle: async () => ({
        response: {
          statusCode: 200,
          reason: "OK",
          headers: { "content-type": "application/x-amz-json-1.1" },
          body: Readable.from([Buffer.from(WARM_UP_ANSWER)]),
        },
      }),
    },
  });
  // Node's shared pool of small Buffers keeps the bytes of the last ones made (the request, its
  // signature and date, the invocation id): with no pool, each warm-up Buffer is its own allocation,
  // collected before the heap is saved. (Zeroing the pool instead would zero the constants modules
  // made from it when they loaded.)
  const poolSize = Buffer.poolSize;
  Buffer.poolSize = 0;
  try {
    await client.send(new GetSecretValueCommand({ SecretId: "warm-up" }));
  } finally {
    client.destroy();
    Buffer.poolSize = poolSize;
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
