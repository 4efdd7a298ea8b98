// Every way the init container fails carries a stable code from one catalogue (FETCH_PROBLEMS in
// src/fetch/errors.ts), at the end of its line on stderr and in the termination message the kubelet
// keeps: these cases assert codes, not prose, so the words can improve freely.
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { describe, test } from "node:test";
import {
  type ExpandEntry,
  FetchEntrySchema,
  sourceKey,
  type ValueEntry,
} from "../../src/contract/fetch-spec.ts";
import { TERMINATION_LOG_ENV } from "../../src/contract/fetched-versions.ts";
import {
  AwsCallError,
  callErrorLine,
  credentialsErrorLine,
  encodeProblem,
  FETCH_PROBLEM_CODES,
  type FetchProblemCode,
  identityFromEnv,
  internalErrorProblem,
  type ProblemContext,
  problemCode,
  specProblem,
  terminationText,
  writeProblem,
} from "../../src/fetch/errors.ts";
import { runFetch } from "../../src/fetch/index.ts";
import { type FetchOutcome, resolveVariables } from "../../src/fetch/resolve.ts";

const ROLE = "arn:aws:iam::123456789012:role/app";
const ctxOf = (env: NodeJS.ProcessEnv): ProblemContext => ({
  identity: identityFromEnv(env),
  timeoutSeconds: 30,
  defaultRegion: "eu-west-1",
});
const irsa = ctxOf({ AWS_ROLE_ARN: ROLE, AWS_WEB_IDENTITY_TOKEN_FILE: "/t" });
const podIdentity = ctxOf({ AWS_CONTAINER_CREDENTIALS_FULL_URI: "http://169.254.170.23/v1/credentials" });
const staticKey = ctxOf({ AWS_ACCESS_KEY_ID: "AKIA" });
const nothing = ctxOf({});
const DB = { secretId: "erp/production/database" };

const call = (code: string, message = "m", ctx = irsa, atDeadline = false) =>
  callErrorLine(DB, new AwsCallError(code, message, "call", 3, atDeadline), ctx);
const creds = (code: string, ctx: ProblemContext, message = "m", atDeadline = false) =>
  credentialsErrorLine(
    "eu-west-1",
    [DB.secretId],
    new AwsCallError(code, message, "credentials", 1, atDeadline),
    ctx,
  );

function resolveErrors(entries: unknown[], secrets: Record<string, string | Buffer>): string[] {
  const parsed = entries.map((e) => FetchEntrySchema.parse(e)) as Array<ValueEntry | ExpandEntry>;
  const fetched = new Map<string, FetchOutcome>();
  for (const e of parsed) {
    const v = secrets[e.source.secretId];
    if (v !== undefined)
      fetched.set(sourceKey(e.source), {
        secretId: e.source.secretId,
        value: typeof v === "string" ? Buffer.from(v) : v,
        binary: typeof v !== "string",
        ...(typeof v === "string" && v.includes("\\ud800") ? {} : {}),
      });
  }
  return resolveVariables(parsed, fetched).errors;
}

const errno = (code: string) => Object.assign(new Error(`${code}: x`), { code });

/** One case per code: the line a failure of that kind produces. */
const CASES: Record<FetchProblemCode, () => string[]> = {
  "spec-missing": () => [specProblem("spec-missing", "SM_INJECTOR_SPEC is not set")],
  "spec-invalid": () => [specProblem("spec-invalid", "SM_INJECTOR_SPEC is not valid JSON")],
  "secret-not-found": () => [call("ResourceNotFoundException")],
  "access-denied": () => [
    call("AccessDeniedException", "not authorized"),
    call("AccessDenied", "no", staticKey),
  ],
  "kms-denied": () => [
    call("AccessDeniedException", "Access to KMS is not allowed"),
    call("DecryptionFailure"),
  ],
  "secret-deleted": () => [call("InvalidRequestException", "marked for deletion")],
  "request-refused": () => [call("InvalidRequestException", "other"), call("ValidationException")],
  "malformed-response": () => [call("MalformedResponse"), creds("MalformedResponse", irsa)],
  "empty-secret": () => [call("EmptySecretValue")],
  throttled: () => [call("ThrottlingException"), call("TooManyRequestsException")],
  deadline: () => [call("DeadlineExceeded"), creds("ETIMEDOUT", irsa, "slow", true)],
  network: () => [call("ECONNRESET"), call("TimeoutError"), creds("ECONNREFUSED", irsa)],
  "no-region": () => [call("Error", "Region is missing")],
  "aws-error": () => [call("InternalServiceError")],
  "token-unreadable": () => [creds("ENOENT", irsa), creds("EACCES", podIdentity)],
  "token-rejected": () => [creds("ExpiredTokenException", irsa), creds("InvalidIdentityToken", irsa)],
  "assume-role-denied": () => [creds("AccessDenied", irsa)],
  "irsa-failed": () => [creds("RegionDisabledException", irsa)],
  "pod-identity-unavailable": () => [creds("CredentialsProviderError", podIdentity)],
  "static-key-refused": () => [
    creds("InvalidClientTokenId", staticKey),
    call("UnrecognizedClientException", "m", staticKey),
  ],
  "no-identity": () => [creds("CredentialsProviderError", nothing)],
  "key-missing": () => [
    ...resolveErrors([{ kind: "value", source: DB, env: "P", key: "password" }], {
      [DB.secretId]: '{"user":"u"}',
    }),
    ...resolveErrors([{ kind: "expand", source: DB, keys: ["x"] }], { [DB.secretId]: '{"user":"u"}' }),
  ],
  "key-ambiguous": () =>
    resolveErrors([{ kind: "value", source: DB, env: "P", key: "p" }], {
      [DB.secretId]: '{"p":"a","p":"b"}',
    }),
  "not-json-object": () =>
    resolveErrors([{ kind: "value", source: DB, env: "P", key: "p" }], { [DB.secretId]: "plain text" }),
  "not-unicode": () =>
    resolveErrors([{ kind: "value", source: DB, env: "P", key: "p" }], { [DB.secretId]: '{"p":"\\ud800"}' }),
  "invalid-variable-name": () =>
    resolveErrors([{ kind: "expand", source: DB }], { [DB.secretId]: '{"not-a-name":"v"}' }),
  "duplicate-variable": () =>
    resolveErrors(
      [
        { kind: "value", source: DB, env: "A" },
        { kind: "value", source: { secretId: "erp/other" }, env: "A" },
      ],
      { [DB.secretId]: "x", "erp/other": "y" },
    ),
  "nul-byte": () => resolveErrors([{ kind: "value", source: DB, env: "A" }], { [DB.secretId]: "a\0b" }),
  "cannot-encode": () => [encodeProblem("erp/x", "shell", "variable UID cannot be set by sourcing")],
  "write-failed": () => [
    writeProblem(errno("ENOENT"), "/run/x"),
    writeProblem(errno("EACCES"), "/run/x"),
    writeProblem(errno("ENOSPC"), "/run/x"),
  ],
  "internal-error": () => [internalErrorProblem(new TypeError("x is undefined"))],
};

describe("every fetch problem carries its code", () => {
  test("each code has a case here", () => {
    assert.deepEqual(Object.keys(CASES).sort(), [...FETCH_PROBLEM_CODES].sort());
  });
  for (const code of FETCH_PROBLEM_CODES) {
    test(code, () => {
      const lines = CASES[code]();
      assert.ok(lines.length > 0, "the case produced no problem");
      for (const line of lines) {
        assert.equal(problemCode(line), code, line);
        assert.ok(line.endsWith(` [${code}]`), line);
      }
    });
  }
});

describe("the init container's output", () => {
  const run = async (env: NodeJS.ProcessEnv) => {
    const stderr = new PassThrough();
    const stdout = new PassThrough();
    let err = "";
    stderr.on("data", (c) => {
      err += String(c);
    });
    stdout.resume();
    const code = await runFetch({ env, stdout, stderr });
    return { code, stderr: err };
  };

  test("a bad spec: exit 2, its code on stderr", async () => {
    const missing = await run({});
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /^sm-injector fetch: .* \[spec-missing\]\n$/);
    const invalid = await run({ SM_INJECTOR_SPEC: "{nope" });
    assert.equal(invalid.code, 2);
    assert.match(invalid.stderr, /\[spec-invalid\]\n$/);
  });

  test("a failed fetch: each line coded on stderr, and the same lines as the termination message", {
    timeout: 20_000,
  }, async () => {
    const dir = await mkdtemp(join(tmpdir(), "fetch-problems-"));
    try {
      const termination = join(dir, "termination-log");
      await writeFile(termination, ""); // the kubelet creates it; fetch never does
      // The AWS SDK reads its settings from process.env (io.env is the spec's and the pod's names).
      const aws = {
        AWS_ACCESS_KEY_ID: "AKIAEXAMPLE",
        AWS_SECRET_ACCESS_KEY: "secret",
        AWS_REGION: "eu-west-1",
        // Nothing listens there: every attempt is refused until the 1 s deadline.
        AWS_ENDPOINT_URL: "http://127.0.0.1:9",
        AWS_EC2_METADATA_DISABLED: "true",
      };
      const saved = Object.fromEntries(Object.keys(aws).map((k) => [k, process.env[k]]));
      Object.assign(process.env, aws);
      const r = await run({
        SM_INJECTOR_SPEC: JSON.stringify({
          version: 1,
          format: "shell",
          outputDir: join(dir, "out"),
          fileName: "env",
          fileMode: 0o400,
          timeoutSeconds: 1,
          entries: [
            { kind: "value", source: { secretId: "erp/a", region: "eu-west-1" }, env: "A" },
            { kind: "value", source: { secretId: "erp/b", region: "eu-west-1" }, env: "B" },
          ],
        }),
        [TERMINATION_LOG_ENV]: termination,
        ...aws,
      }).finally(() => {
        for (const [k, v] of Object.entries(saved)) {
          if (v === undefined) delete process.env[k];
          else process.env[k] = v;
        }
      });
      assert.equal(r.code, 1, r.stderr);
      const lines = r.stderr.trim().split("\n");
      assert.equal(lines.length, 2, r.stderr);
      for (const l of lines) assert.match(l, /^sm-injector fetch: erp\/[ab]: .* \[(network|deadline)\]$/);
      const message = await readFile(termination, "utf8");
      assert.equal(message, `${lines.map((l) => l.slice("sm-injector fetch: ".length)).join("\n")}\n`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("the termination message keeps whole lines within the kubelet's limit and counts the rest", () => {
    const lines = Array.from(
      { length: 50 },
      (_, i) => `erp/s${i}: AccessDeniedException as ${ROLE} — … [access-denied]`,
    );
    const text = terminationText(lines, 1024);
    assert.ok(Buffer.byteLength(text) <= 1024, `${Buffer.byteLength(text)} bytes`);
    assert.match(text, /^erp\/s0: .*\[access-denied\]\n/);
    assert.match(text, /… and \d+ more problems \(see the log\)\n$/);
    assert.equal(terminationText(lines.slice(0, 2), 1024), `${lines[0]}\n${lines[1]}\n`);
  });
});
