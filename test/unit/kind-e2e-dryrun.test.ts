// scripts/kind-e2e.sh needs Docker, which this machine lacks, so it is run here against stand-ins:
// `docker`, `kind`, `kubectl` and `helm` on PATH that record every call (and its stdin) and answer
// like a cluster where everything works. The script must then walk the whole flow in order, pass
// the seeded values through its YAML quoting intact, and fail when the app's env file is wrong.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { parseAllDocuments } from "yaml";

const ROOT = path.join(import.meta.dirname, "..", "..");
const SCRIPT = path.join(ROOT, "scripts", "kind-e2e.sh");

/**
 * A stand-in for every tool: appends `tool args…` (and, for `apply -f -`, the YAML it was given)
 * to $STUB_LOG, and prints what the script reads back. STUB_WRONG_VALUE=1 makes the app's env file
 * hold a wrong DATABASE_URL.
 */
const STUB = `#!/usr/bin/env bash
tool="$(basename "$0")"
printf '%s\\0' "$tool" "$@" >>"$STUB_LOG"
# The e2e suite's cluster comes from the environment: recorded with its call.
if [[ "$tool" == node ]]; then
  printf '%s\\0' "cluster=$SM_INJECTOR_E2E_CLUSTER" "load=$SM_INJECTOR_E2E_LOAD_IMAGE" "host=$SM_INJECTOR_E2E_HOST_ADDRESS" >>"$STUB_LOG"
fi
printf '\\n' >>"$STUB_LOG"
args="$*"
if [[ "$tool" == kubectl && "$args" == *"apply -f -"* ]]; then
  n=$(ls "$STUB_DIR"/apply-*.yaml 2>/dev/null | wc -l); cat >"$STUB_DIR/apply-$n.yaml"; exit 0
fi
if [[ "$tool" == docker && "$args" == *"network inspect kind"* ]]; then printf '172.18.0.1 fc00:f853:ccd:e793::1 '; exit 0; fi
[[ "$tool" != kubectl ]] && exit 0
# The value the seed Job was given for variable $1, as Kubernetes would read it from the YAML.
seeded() {
  python3 - "$STUB_DIR" "$1" <<'PY'
import glob, sys, yaml
for f in sorted(glob.glob(sys.argv[1] + "/apply-*.yaml")):
    for d in yaml.safe_load_all(open(f)):
        if d and d.get("kind") == "Job":
            env = d["spec"]["template"]["spec"]["containers"][0]["env"]
            sys.stdout.write(next(e["value"] for e in env if e["name"] == sys.argv[2]))
PY
}
case "$args" in
  *"caBundle"*|*"ca\\.crt"*) printf 'Q0E=' ;;
  *"get pods -l app=api"*) printf 'api-1' ;;
  *"get pod api-1 -o jsonpath={range .spec.initContainers"*) printf 'SM_INJECTOR_SPEC\\nAWS_ENDPOINT_URL\\n' ;;
  *"get pod api-1 -o yaml"*) printf 'kind: Pod\\n' ;;
  *"exec api-1 -c api"*'$DATABASE_URL'*)
    if [[ "\${STUB_WRONG_VALUE:-}" == 1 ]]; then printf 'postgresql://mangled'; exit 0; fi
    seeded DATABASE_URL_VALUE ;;
  *"exec api-1 -c api"*'$JWT_SECRET_KEY'*) seeded JWT_VALUE ;;
  *"get pod missing -o jsonpath={.status.initContainerStatuses"*) printf '1' ;;
  *"get pod missing -o jsonpath={.status.phase}"*) printf 'Pending' ;;
  *"run optedin"*) echo 'Error from server: admission webhook "inject.sm-injector.io" ... no endpoints available' >&2; exit 1 ;;
esac
exit 0
`;

interface Run {
  code: number | null;
  stderr: string;
  calls: string[][];
  applied: string[];
}

let dir: string;

async function dryRun(env: Record<string, string> = {}): Promise<Run> {
  const work = await mkdtemp(path.join(dir, "run-"));
  const log = path.join(work, "calls");
  const r = spawnSync("bash", [SCRIPT], {
    encoding: "utf8",
    timeout: 60_000,
    env: {
      PATH: `${path.join(dir, "bin")}:${process.env.PATH}`,
      HOME: process.env.HOME ?? "/tmp",
      TMPDIR: work,
      STUB_LOG: log,
      STUB_DIR: work,
      HELM: path.join(dir, "bin", "helm"),
      ...env,
    },
  });
  const raw = await readFile(log, "utf8").catch(() => "");
  const calls = raw
    .split("\n")
    .filter(Boolean)
    .map((l) => l.split("\0").filter((_, i, a) => i < a.length - 1));
  const applied: string[] = [];
  for (let i = 0; ; i++) {
    const text = await readFile(path.join(work, `apply-${i}.yaml`), "utf8").catch(() => undefined);
    if (text === undefined) break;
    applied.push(text);
  }
  return { code: r.status, stderr: r.stderr, calls, applied };
}

/** Index of the first call of `tool` whose arguments contain every one of `words`, at or after `from`. */
function callIndex(calls: string[][], tool: string, words: string[], from = 0): number {
  return calls.findIndex((c, i) => i >= from && c[0] === tool && words.every((w) => c.slice(1).includes(w)));
}

describe("scripts/kind-e2e.sh, dry run with stand-in tools", () => {
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "kind-e2e-"));
    await mkdir(path.join(dir, "bin"));
    for (const tool of ["docker", "kind", "kubectl", "helm", "node"]) {
      await writeFile(path.join(dir, "bin", tool), STUB);
      await chmod(path.join(dir, "bin", tool), 0o755);
    }
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  test("walks the flow in order: cluster, image, chart, moto, the IRSA app, checks in the container, cleanup", async () => {
    const r = await dryRun();
    assert.equal(r.code, 0, r.stderr.slice(-3000));
    assert.match(r.stderr, /\[kind-e2e\] PASSED/);
    const steps: Array<[string, string[]]> = [
      ["kind", ["create", "cluster", "--config", path.join(ROOT, "kind-config.yaml")]],
      ["docker", ["build", "-t", "sm-injector:kind-e2e", ROOT]],
      ["kind", ["load", "docker-image", "sm-injector:kind-e2e"]],
      ["helm", ["upgrade", "--install", "sm-injector", path.join(ROOT, "charts", "sm-injector")]],
      ["helm", ["test", "sm-injector"]],
      ["kubectl", ["-n", "moto", "wait", "--for=condition=complete", "job/seed"]],
      ["kubectl", ["-n", "erp", "rollout", "status", "deploy/api"]],
      ["kubectl", ["-n", "erp", "exec", "api-1", "-c", "api"]],
      ["kubectl", ["-n", "erp", "run", "missing"]],
      ["kubectl", ["-n", "sm-injector", "scale", "deploy/sm-injector", "--replicas=0"]],
      ["helm", ["uninstall", "sm-injector"]],
      [
        "node",
        [
          "--test",
          "test/e2e/real-node-helm.test.ts",
          "cluster=kubeconfig",
          "load=kind load image-archive --name sm-injector-e2e",
          "host=172.18.0.1",
        ],
      ],
      ["kind", ["delete", "cluster"]],
    ];
    let at = 0;
    for (const [tool, words] of steps) {
      const i = callIndex(r.calls, tool, words, at);
      assert.ok(
        i >= 0,
        `no ${tool} ${words.join(" ")} after call ${at}:\n${r.calls.map((c) => c.join(" ")).join("\n")}`,
      );
      at = i;
    }
  });

  test("what it applies: moto at the pinned version, and an opted-in app with IRSA's token and role", async () => {
    const r = await dryRun();
    const docs = r.applied.flatMap((t) => parseAllDocuments(t).map((d) => d.toJS()));
    const moto = /moto\[server\]==([\d.]+)/.exec(
      await readFile(path.join(ROOT, "test", "requirements.txt"), "utf8"),
    )?.[1];
    const motoDeploy = docs.find((d) => d?.kind === "Deployment" && d.metadata.name === "moto");
    assert.equal(motoDeploy?.spec.template.spec.containers[0].image, `motoserver/moto:${moto}`);
    const sa = docs.find((d) => d?.kind === "ServiceAccount");
    assert.match(sa?.metadata.annotations["eks.amazonaws.com/role-arn"], /^arn:aws:iam::\d{12}:role\//);
    const app = docs.find((d) => d?.kind === "Deployment" && d.metadata.name === "api");
    const t = app?.spec.template;
    assert.equal(t.metadata.labels["sm-injector.io/inject"], "true");
    assert.ok(t.metadata.annotations["sm-injector.io/env-from"]);
    const token = t.spec.volumes[0].projected.sources[0].serviceAccountToken;
    assert.equal(token.audience, "sts.amazonaws.com");
    const env = Object.fromEntries(
      t.spec.containers[0].env.map((e: { name: string; value: string }) => [e.name, e.value]),
    );
    assert.equal(env.AWS_ROLE_ARN, sa.metadata.annotations["eks.amazonaws.com/role-arn"]);
    assert.ok(env.AWS_WEB_IDENTITY_TOKEN_FILE && env.AWS_ENDPOINT_URL);
  });

  test("a wrong value in the app's env file fails the run, and the cluster is still deleted", async () => {
    const r = await dryRun({ STUB_WRONG_VALUE: "1" });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /FAILED: DATABASE_URL in the env file is 'postgresql:\/\/mangled'/);
    assert.ok(callIndex(r.calls, "kind", ["delete", "cluster"]) >= 0, "cleanup deletes the cluster");
  });

  test("KEEP_CLUSTER=1 keeps the cluster", async () => {
    const r = await dryRun({ KEEP_CLUSTER: "1" });
    assert.equal(r.code, 0, r.stderr.slice(-2000));
    assert.equal(callIndex(r.calls, "kind", ["delete", "cluster"]), -1);
  });
});
