// biome-ignore-all lint/suspicious/noTemplateCurlyInString: ${…} is the template syntax under test
// Issue 16's "done when": a DATABASE_URL composed from an RDS-format secret with a hostile password
// is exact after `. env` and connects to a real PostgreSQL before and after a rotation.
//
//   pod annotations ─(the webhook's reviewPod + its JSON patch)─► SM_INJECTOR_SPEC of the init container
//   dist/sm-injector.mjs fetch against moto ─► env file ─► `. env` in dash and bash ─► python (psycopg) connects
//   rotation as the RDS rotation function does it: ALTER ROLE … PASSWORD in the database, a new
//   AWSCURRENT JSON in Secrets Manager (the old version becomes AWSPREVIOUS)
//   ─► the old env file no longer connects ─► the rotation controller's cycle (real DescribeSecret
//   against moto; the pod, ReplicaSet and Deployment as the API server would return them) restarts
//   the Deployment ─► the restarted pod's init container fetches again ─► connects.
//
// PostgreSQL comes from Debian's packages (.ci/run installs postgresql): its own cluster in a temp
// directory, as an unprivileged user, on a free loopback port.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { DescribeSecretCommand, SecretsManagerClient } from "@aws-sdk/client-secrets-manager";
import type { V1Pod, V1PodTemplateSpec } from "@kubernetes/client-node";
import { pino } from "pino";
import { reviewPod } from "../../src/admission/review.ts";
import { InjectorConfigSchema } from "../../src/contract/config.ts";
import { type RotationDeps, rotationCycle } from "../../src/rotation/controller.ts";
import type { Workload } from "../../src/rotation/plan.ts";
import { applyPatch } from "../helpers/json-patch.ts";
import { initContainerEnv, type Moto, startMoto } from "../helpers/moto.ts";
import { fetchFinished } from "../helpers/pod-status.ts";
import { type Postgres, postgresBinDir, startPostgres } from "../helpers/postgres.ts";
import { CLI } from "../helpers/webhook.ts";

const RDS = "erp/production/rds";
const USER = "erp_app";
const DBNAME = "erp main";
// Every character that breaks a URL or a shell, a space and non-ASCII (no NUL: no C string holds one).
const HOSTILE = `@:/?#%$'"\\\` p$(id)ü`;
const ROTATED = `${HOSTILE}-rotated&=+;é`;

const binDir = await postgresBinDir();
const SKIP = binDir
  ? false
  : "PostgreSQL is not installed (apt-get install postgresql; .ci/run installs it, so CI never skips this)";

const secretJson = (password: string, port: number) =>
  JSON.stringify({ engine: "postgres", host: "127.0.0.1", port, username: USER, password, dbname: DBNAME });

/** The Deployment's pod template, as its author wrote it. */
const TEMPLATE: V1PodTemplateSpec = {
  metadata: {
    labels: { app: "erp-api", "sm-injector.io/inject": "true" },
    annotations: {
      "sm-injector.io/region": "us-east-1",
      "sm-injector.io/template.DATABASE_URL": `postgresql://\${${RDS}#username|urlencode}:\${${RDS}#password|urlencode}@\${${RDS}#host}:\${${RDS}#port}/\${${RDS}#dbname|urlencode}`,
      "sm-injector.io/restart-on-rotation": "true",
    },
  },
  spec: {
    securityContext: { runAsUser: 1000 },
    containers: [{ name: "api", image: "registry.example.com/erp/api:1.4.2", command: ["uvicorn"] }],
  },
};
const DEPLOYMENT: Workload = { kind: "Deployment", namespace: "erp", name: "erp-api", uid: "deploy-uid" };
const RS = { name: "erp-api-5d8f7c", uid: "rs-uid", hash: "5d8f7c" };

let moto: Moto;
let pg: Postgres;
let scratch: string;

/** The pod of the Deployment's ReplicaSet, mutated by the webhook's own review (its JSON patch applied). */
async function admittedPod(): Promise<V1Pod> {
  const pod: V1Pod = {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      ...TEMPLATE.metadata,
      name: `${RS.name}-abcde`,
      namespace: "erp",
      labels: { ...TEMPLATE.metadata?.labels, "pod-template-hash": RS.hash },
      ownerReferences: [
        { apiVersion: "apps/v1", kind: "ReplicaSet", name: RS.name, uid: RS.uid, controller: true },
      ],
    },
    spec: TEMPLATE.spec,
  };
  const outcome = await reviewPod(
    {
      uid: "pg",
      kind: { group: "", version: "v1", kind: "Pod" },
      operation: "CREATE",
      namespace: "erp",
      object: pod as unknown as Record<string, unknown>,
    },
    {
      config: InjectorConfigSchema.parse({ image: "registry.example.com/sm-injector:test" }),
      lookupServiceAccount: async () => ({}),
      lookupNamespacePolicy: async () => undefined,
    },
  );
  assert.ok(outcome.response.allowed && outcome.response.patch, outcome.response.status?.message);
  return applyPatch(pod, JSON.parse(Buffer.from(outcome.response.patch, "base64").toString("utf8")));
}

/**
 * Runs the pod's init container as the kubelet would, with the real bundle: its spec (output dir
 * moved into a scratch directory) against moto; returns the env file and the termination message.
 */
async function runInitContainer(pod: V1Pod, run: string): Promise<{ file: string; message: string }> {
  const init = pod.spec?.initContainers?.find((c) => c.name === "sm-injector-fetch");
  const spec = JSON.parse(init?.env?.find((e) => e.name === "SM_INJECTOR_SPEC")?.value ?? "{}");
  const { env, outputDir, terminationLog } = await initContainerEnv(moto.endpoint, join(scratch, run), spec);
  const r = await exec(process.execPath, [CLI, "fetch"], env);
  assert.equal(r.code, 0, r.stderr);
  for (const text of [r.stdout, r.stderr])
    assert.ok(!text.includes("p$(id)"), "no value in the init container's output");
  return { file: join(outputDir, spec.fileName), message: await readFile(terminationLog, "utf8") };
}

function exec(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, stdio: ["ignore", "pipe", "pipe"], timeout: 60_000 });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (c: Buffer) => out.push(c));
    child.stderr.on("data", (c: Buffer) => err.push(c));
    child.on("error", reject);
    child.on("close", (code) =>
      resolve({
        code: code ?? 1,
        stdout: Buffer.concat(out).toString(),
        stderr: Buffer.concat(err).toString(),
      }),
    );
  });
}

// The app: DATABASE_URL from the environment the shell built by sourcing the file, as given.
const APP = `
import json, os, psycopg
url = os.environ["DATABASE_URL"]
try:
    with psycopg.connect(url, connect_timeout=10) as conn:
        user, db = conn.execute("select current_user, current_database()").fetchone()
    print(json.dumps({"user": user, "db": db, "url": url}))
except psycopg.OperationalError as e:
    print(json.dumps({"error": str(e).strip().splitlines()[-1]}))
`;

/** `. FILE` in `shell`, then the app: what it connected as, or the driver's error. */
async function appWithEnvFile(shell: "dash" | "bash", file: string): Promise<Record<string, string>> {
  const r = await exec(shell, ["-c", '. "$1" && exec python3 -c "$2"', shell, file, APP], {
    PATH: process.env.PATH,
    HOME: scratch,
    PYTHONUTF8: "1",
  });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

/** The rotation controller's cycle: the API server's objects in memory, DescribeSecret real (moto). */
async function rotationCheck(pod: V1Pod, message: string) {
  // DescribeSecret in the region the template's reference resolved to, as the controller calls it.
  const clients = new Map<string, SecretsManagerClient>();
  const sm = (region: string) => {
    const c =
      clients.get(region) ??
      new SecretsManagerClient({
        region,
        endpoint: moto.endpoint,
        credentials: { accessKeyId: "testing", secretAccessKey: "testing" },
      });
    clients.set(region, c);
    return c;
  };
  const stamped: Array<Record<string, string>> = [];
  const running: V1Pod = {
    ...pod,
    status: {
      phase: "Running",
      initContainerStatuses: [fetchFinished(message)],
    },
  };
  const rsTemplate = {
    ...TEMPLATE,
    metadata: {
      ...TEMPLATE.metadata,
      labels: { ...TEMPLATE.metadata?.labels, "pod-template-hash": RS.hash },
    },
  };
  const deps: RotationDeps = {
    async *podPages() {
      yield [running];
    },
    replicaSet: async (_ns, name) =>
      name === RS.name
        ? {
            uid: RS.uid,
            controller: {
              apiVersion: "apps/v1",
              kind: "Deployment",
              name: DEPLOYMENT.name,
              uid: DEPLOYMENT.uid,
            },
            labels: rsTemplate.metadata.labels,
            template: rsTemplate,
          }
        : undefined,
    controllerRevision: async () => undefined,
    workload: async (kind, _ns, name) =>
      kind === "Deployment" && name === DEPLOYMENT.name
        ? { uid: DEPLOYMENT.uid, selector: { matchLabels: { app: "erp-api" } }, template: TEMPLATE }
        : undefined,
    stampTemplate: async (_w, annotations) => {
      stamped.push(annotations);
    },
    versionStages: async (region, secretId) =>
      (await sm(region).send(new DescribeSecretCommand({ SecretId: secretId }))).VersionIdsToStages ?? {},
    log: pino({ level: "silent" }),
  };
  try {
    const report = await rotationCycle(deps, {
      minRestartIntervalMs: 0,
      dryRun: false,
      defaultRegion: "us-east-1",
    });
    return { report, stamped };
  } finally {
    for (const c of clients.values()) c.destroy();
  }
}

describe("a composed DATABASE_URL against a real PostgreSQL, before and after rotation", {
  skip: SKIP,
}, () => {
  before(async () => {
    assert.ok(existsSync(CLI), `${CLI} is missing; run \`npm run build\` first (npm test does)`);
    scratch = await mkdtemp(join(tmpdir(), "sm-injector-pg-test-"));
    [pg, moto] = await Promise.all([startPostgres(binDir as string), startMoto()]);
    await pg.admin("CREATE ROLE erp_app LOGIN PASSWORD {pw}", { pw: HOSTILE });
    await pg.admin('CREATE DATABASE "erp main" OWNER erp_app');
    await moto.createSecret(RDS, secretJson(HOSTILE, pg.port));
  });
  after(async () => {
    await Promise.all([pg?.stop(), moto?.stop()]);
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  test("connects with the hostile password, the old file stops working after rotation, the restarted pod connects again", async () => {
    const pod = await admittedPod();
    const first = await runInitContainer(pod, "first");
    for (const shell of ["dash", "bash"] as const) {
      const r = await appWithEnvFile(shell, first.file);
      assert.deepEqual([r.user, r.db, r.error], [USER, DBNAME, undefined], `${shell}: ${r.error}`);
    }

    // Nothing to do before the rotation.
    const quiet = await rotationCheck(pod, first.message);
    assert.equal(quiet.report.watchedPods, 1, JSON.stringify(quiet.report.held));
    assert.deepEqual(quiet.report.restarted, []);

    // The RDS rotation function: the new password in the database, then the new AWSCURRENT.
    await pg.admin("ALTER ROLE erp_app PASSWORD {pw}", { pw: ROTATED });
    const { versionId } = await moto.putSecretValue(RDS, secretJson(ROTATED, pg.port));
    const stages =
      (await moto.client.send(new DescribeSecretCommand({ SecretId: RDS }))).VersionIdsToStages ?? {};
    assert.deepEqual(stages[versionId], ["AWSCURRENT"]);
    assert.ok(
      Object.values(stages).some((s) => s.includes("AWSPREVIOUS")),
      "the old version is AWSPREVIOUS",
    );

    const stale = await appWithEnvFile("dash", first.file);
    assert.match(stale.error ?? "", /password authentication failed for user "erp_app"/);

    const check = await rotationCheck(pod, first.message);
    assert.equal(check.report.restarted.length, 1, JSON.stringify(check.report.held));
    assert.deepEqual(check.report.restarted[0]?.workload, DEPLOYMENT);
    assert.equal(check.report.restarted[0]?.changes[0]?.secretId, RDS);
    assert.equal(check.report.restarted[0]?.changes[0]?.to, versionId);
    assert.equal(check.stamped.length, 1, "the Deployment's template is stamped: a rolling restart");

    // The restarted pod: the same admission, a new init container run.
    const second = await runInitContainer(await admittedPod(), "second");
    for (const shell of ["dash", "bash"] as const) {
      const r = await appWithEnvFile(shell, second.file);
      assert.deepEqual([r.user, r.db, r.error], [USER, DBNAME, undefined], `${shell}: ${r.error}`);
    }
  });
});
