// The whole path for real: a pod created through the API server is mutated by the webhook, then the
// pod AS STORED is run by the pod runner (test/e2e/harness/pod-runner.ts): the injected init container
// (`sm-injector fetch` from the bundle) with the pod's env and mounts, as its uid, with a projected
// ServiceAccount token from the TokenRequest API, doing IRSA web identity through moto's STS and
// GetSecretValue against moto; then the app container's (wrapped) command, which must see the exact
// secret values. And no secret value anywhere else: not in the stored pod, the webhook's log or the
// init container's output.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import type { V1Container, V1Pod } from "@kubernetes/client-node";
import { INIT_CONTAINER, INIT_IMAGE, INJECT_LABEL, useE2E } from "./harness/env.ts";
import { IMAGE_PATH, NODE_BIND, sminjectorImage } from "./harness/images.ts";
import { type ImageConfig, type PodRun, podRunnerUnsupportedReason, runPod } from "./harness/pod-runner.ts";

const unsupported = podRunnerUnsupportedReason();
const NS = "erp-prod";
const ROLE_ARN = "arn:aws:iam::123456789012:role/erp-api";

// The strategy's example secrets; values with everything a shell or a parser could get wrong.
const DATABASE_URL = "postgresql://erp_app:p'a\"s$s`w0rd`\\@db.internal:5432/erp?sslmode=require";
// biome-ignore lint/suspicious/noTemplateCurlyInString: a literal ${HOME} the shell must not expand
const JWT_SECRET_KEY = "jwt-$(id)-${HOME}-'single'-\"double\"-`uname`-\\n-\nsecond line\twith tab\n";
const S3 = {
  access_key_id: "AKIAIOSFODNN7EXAMPLE",
  secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCY+$EXAMPLE'KEY\"",
};
const SECRETS: Record<string, string> = {
  "erp/production/database": JSON.stringify({ DATABASE_URL, POOL_SIZE: 10 }),
  "erp/staging/jwt/secret_key": JWT_SECRET_KEY,
  "erp/production/aws/s3_app_user_credentials": JSON.stringify(S3),
};
const VALUES = [DATABASE_URL, JWT_SECRET_KEY, S3.access_key_id, S3.secret_access_key];

// Without the runner's prerequisites nothing is started (the suite below is skipped with the reason).
const noop = () => {};
const env = useE2E(unsupported ? { before: noop, after: noop } : { before, after }, {
  moto: true,
  setup: async (e) => {
    await e.createNamespace(NS, {
      serviceAccounts: { "erp-api": { "eks.amazonaws.com/role-arn": ROLE_ARN } },
    });
    for (const [name, value] of Object.entries(SECRETS)) await e.moto?.createSecret(name, value);
  },
});

const IMAGES: Record<string, ImageConfig> = {
  [INIT_IMAGE]: sminjectorImage(),
  "registry.example.com/erp/api:1.0.0": { env: { PATH: IMAGE_PATH }, binds: [NODE_BIND] },
};

const appSecurity = {
  allowPrivilegeEscalation: false,
  readOnlyRootFilesystem: true,
  capabilities: { drop: ["ALL"] },
};

async function createAndRead(body: V1Pod): Promise<V1Pod> {
  const { core } = env();
  const created = await core.createNamespacedPod({ namespace: NS, body });
  const stored = await core.readNamespacedPod({ namespace: NS, name: created.metadata?.name as string });
  assert.equal(stored.spec?.initContainers?.filter((c) => c.name === INIT_CONTAINER).length, 1, "injected");
  return stored;
}

/** No secret value in the stored pod, the webhook's log, or the init container's output. */
function assertNoLeak(pod: V1Pod, run: PodRun, values: readonly string[]) {
  const places: Array<[string, string]> = [
    ["the stored pod", JSON.stringify(pod)],
    ["the webhook's log", env().webhookLog()],
    ...run.initContainers.flatMap(
      (c): Array<[string, string]> => [
        [`${c.name} stdout`, c.stdout.toString("utf8")],
        [`${c.name} stderr`, c.stderr.toString("utf8")],
      ],
    ),
  ];
  for (const value of values) {
    // Each line of a multi-line value too, and the JSON-escaped form (logs are JSON).
    const needles = new Set([
      value,
      JSON.stringify(value).slice(1, -1),
      ...value.split("\n").filter((l) => l.length > 8),
    ]);
    for (const [where, text] of places)
      for (const needle of needles)
        assert.equal(
          text.includes(needle),
          false,
          `a secret value (${needle.slice(0, 6)}…) appears in ${where}`,
        );
  }
}

function describeRun(run: PodRun): string {
  return [...run.initContainers, ...run.containers]
    .map((c) => `${c.name}: exit ${c.exitCode ?? c.signal}\n  stdout: ${c.stdout}\n  stderr: ${c.stderr}`)
    .join("\n");
}

/** The init container's JSON log lines. */
function initLog(run: PodRun): Array<Record<string, unknown>> {
  return (run.initContainers.at(-1)?.stdout.toString("utf8") ?? "")
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe("the pod runner: the injected init container and the app, run from the stored pod", {
  skip: unsupported,
}, () => {
  test("IRSA through STS with a TokenRequest token, shell env file, wrapped command sees the exact values", async () => {
    const names = ["DATABASE_URL", "JWT_SECRET_KEY", "S3_access_key_id", "S3_secret_access_key"];
    // Prints the chosen variables as JSON (no `$` in it: kubelet expands $(VAR) in commands).
    const program = `process.stdout.write(JSON.stringify({ uid: process.getuid(), env: Object.fromEntries(${JSON.stringify(
      [...names, "SM_INJECTOR_ENV_FILE", "AWS_ROLE_ARN"],
    )}.map((k) => [k, process.env[k] === undefined ? null : process.env[k]])) }))`;
    const pod = await createAndRead({
      metadata: {
        name: "erp-api",
        labels: { app: "erp-api", [INJECT_LABEL]: "true" },
        annotations: {
          "sm-injector.io/env.DATABASE_URL": "erp/production/database#DATABASE_URL",
          "sm-injector.io/env.JWT_SECRET_KEY": "erp/staging/jwt/secret_key",
          "sm-injector.io/env-from.s3": "erp/production/aws/s3_app_user_credentials?prefix=S3_",
          "sm-injector.io/wrap-command": "true",
        },
      },
      spec: {
        serviceAccountName: "erp-api",
        securityContext: {
          runAsNonRoot: true,
          runAsUser: 1000,
          runAsGroup: 1000,
          seccompProfile: { type: "RuntimeDefault" },
        },
        containers: [
          {
            name: "api",
            image: "registry.example.com/erp/api:1.0.0",
            command: ["node", "-e", program],
            env: [
              { name: "AWS_ENDPOINT_URL", value: env().moto?.endpoint },
              { name: "AWS_REGION", value: "us-east-1" },
            ],
            securityContext: appSecurity,
          },
        ],
      },
    });
    const app = pod.spec?.containers[0] as V1Container;
    assert.equal(app.command?.[0], "/bin/sh", "the command was wrapped");

    const run = await runPod({ core: env().core, pod, images: IMAGES });
    try {
      assert.equal(run.phase, "Succeeded", describeRun(run));
      const init = run.initContainers.at(-1);
      assert.equal(init?.name, INIT_CONTAINER);
      // The init container had no credentials but the web identity token (env -i, metadata disabled).
      assert.equal(init?.env.AWS_ACCESS_KEY_ID, undefined);
      assert.equal(init?.env.AWS_ROLE_ARN, ROLE_ARN);
      const tokenFile = init?.env.AWS_WEB_IDENTITY_TOKEN_FILE ?? "";
      assert.match(tokenFile, /^\/var\/run\/secrets\/sm-injector\//);
      // The token it used: from TokenRequest, for STS, bound to this pod.
      const token = readFileSync(path.join(run.volumeDir("sm-injector-aws-iam-token"), "token"), "utf8");
      const claims = JSON.parse(Buffer.from(token.split(".")[1] ?? "", "base64url").toString("utf8")) as {
        aud: string[];
        sub: string;
        "kubernetes.io": { pod?: { name: string; uid: string } };
      };
      assert.deepEqual(claims.aud, ["sts.amazonaws.com"]);
      assert.equal(claims.sub, `system:serviceaccount:${NS}:erp-api`);
      assert.deepEqual(claims["kubernetes.io"].pod, { name: "erp-api", uid: pod.metadata?.uid });

      const out = JSON.parse(run.containers[0]?.stdout.toString("utf8") ?? "") as {
        uid: number;
        env: Record<string, string | null>;
      };
      assert.equal(out.uid, 1000);
      assert.deepEqual(out.env, {
        DATABASE_URL,
        JWT_SECRET_KEY,
        S3_access_key_id: S3.access_key_id,
        S3_secret_access_key: S3.secret_access_key,
        SM_INJECTOR_ENV_FILE: "/run/sm-injector/env",
        AWS_ROLE_ARN: null,
      });

      // A memory-backed file only the app's user can read.
      const file = path.join(run.volumeDir("sm-injector-secrets"), "env");
      const st = statSync(file);
      assert.equal(st.mode & 0o777, 0o400);
      assert.equal(st.uid, 1000);
      assert.deepEqual(readdirSync(run.volumeDir("sm-injector-secrets")), ["env"], "no temporary files left");

      // The audit trail: each secret fetched once, by id and version, never its value.
      const log = initLog(run);
      const fetched = log.filter((l) => l.msg === "fetched secret");
      assert.deepEqual(fetched.map((l) => l.secretId).sort(), Object.keys(SECRETS).sort());
      assert.ok(
        fetched.every((l) => typeof l.versionId === "string" && l.namespace === NS && l.pod === "erp-api"),
      );
      assert.ok(log.some((l) => l.msg === "secrets written"));
      assertNoLeak(pod, run, VALUES);
    } finally {
      await run.cleanup();
    }
  });

  test("a migration init container listed in sm-injector.io/containers runs after the fetch and sees the secrets; an earlier init container does not", async () => {
    // Each container prints whether it sees the secret: only whether its SHA-256 matches (the pod
    // spec, where this program is, must not hold the value).
    const digest = createHash("sha256").update(DATABASE_URL).digest("hex");
    const probe = (who: string) =>
      `const v = process.env.DATABASE_URL; process.stdout.write(JSON.stringify({ who: ${JSON.stringify(who)}, uid: process.getuid(), file: process.env.SM_INJECTOR_ENV_FILE ?? null, matches: v === undefined ? null : require("node:crypto").createHash("sha256").update(v).digest("hex") === "${digest}" }))`;
    const container = (name: string): V1Container => ({
      name,
      image: "registry.example.com/erp/api:1.0.0",
      command: ["node", "-e", probe(name)],
      env: [
        { name: "AWS_ENDPOINT_URL", value: env().moto?.endpoint },
        { name: "AWS_REGION", value: "us-east-1" },
      ],
      securityContext: appSecurity,
    });
    const pod = await createAndRead({
      metadata: {
        name: "erp-migrate",
        labels: { [INJECT_LABEL]: "true" },
        annotations: {
          "sm-injector.io/env.DATABASE_URL": "erp/production/database#DATABASE_URL",
          "sm-injector.io/containers": "migrate,api",
          "sm-injector.io/wrap-command": "true",
        },
      },
      spec: {
        serviceAccountName: "erp-api",
        securityContext: { runAsNonRoot: true, runAsUser: 1000, seccompProfile: { type: "RuntimeDefault" } },
        initContainers: [container("network-init"), container("migrate")],
        containers: [container("api")],
      },
    });
    assert.deepEqual(
      pod.spec?.initContainers?.map((c) => c.name),
      ["network-init", INIT_CONTAINER, "migrate"],
      "the fetch goes just before the first init container that reads the secrets",
    );
    const run = await runPod({ core: env().core, pod, images: IMAGES });
    try {
      assert.equal(run.phase, "Succeeded", describeRun(run));
      assert.deepEqual(
        run.initContainers.map((c) => c.name),
        ["network-init", INIT_CONTAINER, "migrate"],
      );
      const seen = [...run.initContainers, ...run.containers]
        .filter((c) => c.name !== INIT_CONTAINER)
        .map((c) => JSON.parse(c.stdout.toString("utf8")) as Record<string, unknown>);
      assert.deepEqual(seen, [
        { who: "network-init", uid: 1000, file: null, matches: null },
        { who: "migrate", uid: 1000, file: "/run/sm-injector/env", matches: true },
        { who: "api", uid: 1000, file: "/run/sm-injector/env", matches: true },
      ]);
      assertNoLeak(pod, run, [DATABASE_URL]);
    } finally {
      await run.cleanup();
    }
  });

  // The files format with fsGroup (two containers of different users reading a secrets_dir) runs on
  // the real node: test/e2e/real-node-app.test.ts (the kubelet's own fsGroup and tmpfs).

  test("a secret that does not exist: the init container fails naming it, nothing is written, the app never starts", async (t) => {
    const pod = await createAndRead({
      metadata: {
        name: "erp-missing",
        labels: { [INJECT_LABEL]: "true" },
        annotations: {
          "sm-injector.io/env.DATABASE_URL": "erp/production/database#DATABASE_URL",
          "sm-injector.io/env.FEATURE_KEY": "erp/production/does_not_exist",
          "sm-injector.io/wrap-command": "true",
        },
      },
      spec: {
        serviceAccountName: "erp-api",
        securityContext: { runAsNonRoot: true, runAsUser: 1000, seccompProfile: { type: "RuntimeDefault" } },
        containers: [
          {
            name: "api",
            image: "registry.example.com/erp/api:1.0.0",
            command: ["node", "-e", "process.stdout.write('the app ran')"],
            env: [
              { name: "AWS_ENDPOINT_URL", value: env().moto?.endpoint },
              { name: "AWS_REGION", value: "us-east-1" },
            ],
            securityContext: appSecurity,
          },
        ],
      },
    });
    const run = await runPod({ core: env().core, pod, images: IMAGES });
    try {
      assert.equal(run.phase, "Init:Error", describeRun(run));
      const init = run.initContainers.at(-1);
      assert.notEqual(init?.exitCode, 0);
      const stderr = init?.stderr.toString("utf8") ?? "";
      for (const line of stderr.split("\n")) if (line.startsWith("sm-injector")) t.diagnostic(line);
      assert.match(stderr, /erp\/production\/does_not_exist/);
      assert.match(stderr, /ResourceNotFoundException/);
      assert.doesNotMatch(stderr, /erp\/production\/database\b.*ResourceNotFound/);
      assert.deepEqual(
        readdirSync(run.volumeDir("sm-injector-secrets")),
        [],
        "no file, not even a partial one",
      );
      assert.equal(run.containers.length, 0, "the app container never ran");
      assertNoLeak(pod, run, [DATABASE_URL]);
    } finally {
      await run.cleanup();
    }
  });
});
