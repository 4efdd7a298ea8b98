// `sm-injector iam-policy` judged by real tools: secrets created in moto (so their ARNs carry Secrets
// Manager's random 6-character suffix), the generated policy evaluated by a real IAM policy
// evaluator (@cloud-copilot/iam-simulate: resources and wildcards, which moto's IAM enforcement
// does not check), linted by parliament (PyPI), and the Terraform output parsed and format-checked
// by hclfmt (HCL's own parser, built from github.com/hashicorp/hcl/v2 by scripts/build-binaries.sh).
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { runSimulation } from "@cloud-copilot/iam-simulate";
import { runCli, runWithInput } from "../helpers/cli.ts";
import { type Moto, startMoto } from "../helpers/moto.ts";
import { REPO_ROOT } from "../helpers/tools.ts";

const execFileAsync = promisify(execFile);
const ACCOUNT = "123456789012"; // moto's default account
const OTHER_ACCOUNT = "210987654321";
const REGION = "eu-west-1";
const API_ROLE = `arn:aws:iam::${ACCOUNT}:role/erp-api`;
const WORKER_ROLE = `arn:aws:iam::${ACCOUNT}:role/erp-worker`;
const ISSUER = "oidc.eks.eu-west-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE";

interface Policy {
  Version: string;
  Statement: Array<{
    Sid: string;
    Action: string[];
    Resource?: string[];
    Condition?: unknown;
    Principal?: unknown;
  }>;
}
interface Report {
  roles: Array<{
    roleArn: string;
    serviceAccounts: string[];
    policy: Policy;
    trustPolicy?: Policy;
    notes: string[];
  }>;
  rotationController?: { roleArn: string; policy: Policy };
}

/** Runs the built CLI; never throws for a non-zero exit. */
const cli = (args: string[]) => runCli(args);

/** The verdict of a real IAM evaluator on one request under the role's identity policy (and an optional resource policy). */
async function verdict(
  policy: Policy,
  action: string,
  resource: string,
  resourcePolicy?: object,
): Promise<string> {
  const res = await runSimulation(
    {
      identityPolicies: [{ name: "generated", policy: policy as never }],
      serviceControlPolicies: [],
      resourceControlPolicies: [],
      ...(resourcePolicy && { resourcePolicy: resourcePolicy as never }),
      request: {
        action,
        principal: API_ROLE,
        resource: { accountId: resource.split(":")[4] || ACCOUNT, resource },
        contextVariables: {},
      },
    },
    {},
  );
  assert.notEqual(res.resultType, "error", JSON.stringify(res));
  return (res as { overallResult: string }).overallResult;
}

/** The hclfmt binary, built once by scripts/build-binaries.sh (cached). */
async function hclfmt(): Promise<string> {
  const { stdout } = await execFileAsync(
    "bash",
    [join(REPO_ROOT, "scripts", "build-binaries.sh"), "hclfmt"],
    {
      maxBuffer: 1 << 20,
    },
  );
  const dir = stdout.trim().split("\n").pop() as string;
  const { stdout: pin } = await execFileAsync("bash", [
    "-c",
    `. ${JSON.stringify(join(REPO_ROOT, "scripts", "versions.env"))} && printf %s "$HCL_VERSION"`,
  ]);
  return join(dir, `hclfmt-${pin}`);
}

function manifests(refs: { jwtArn: string; redisPartialArn: string }): string {
  return `
apiVersion: v1
kind: ServiceAccount
metadata: { name: erp-api, namespace: erp, annotations: { eks.amazonaws.com/role-arn: "${API_ROLE}" } }
---
apiVersion: apps/v1
kind: Deployment
metadata: { name: erp-api, namespace: erp }
spec:
  selector: { matchLabels: { app: erp-api } }
  template:
    metadata:
      labels: { app: erp-api, sm-injector.io/inject: "true" }
      annotations:
        sm-injector.io/region: ${REGION}
        sm-injector.io/restart-on-rotation: "true"
        sm-injector.io/env.DB_PASSWORD: erp/production/rds#password
        sm-injector.io/env.LEGACY_TOKEN: erp/production/rds-abcdef
        sm-injector.io/env.JWT_SECRET_KEY: ${refs.jwtArn}
        sm-injector.io/env.REDIS_PASSWORD: ${refs.redisPartialArn}
    spec:
      serviceAccountName: erp-api
      containers: [{ name: api, image: api:1 }]
---
apiVersion: apps/v1
kind: Deployment
metadata: { name: erp-worker, namespace: erp }
spec:
  selector: { matchLabels: { app: erp-worker } }
  template:
    metadata:
      labels: { app: erp-worker, sm-injector.io/inject: "true" }
      annotations:
        sm-injector.io/region: ${REGION}
        sm-injector.io/env-from: erp/production/worker
    spec:
      serviceAccountName: erp-worker
      containers: [{ name: worker, image: worker:1 }]
`;
}

describe("iam-policy: the generated policies under real evaluators", () => {
  let moto: Moto;
  let dir: string;
  /** Real ARNs, as Secrets Manager returned them. */
  const arns: Record<string, string> = {};
  let report: Report;
  let api: Report["roles"][number];

  before(async () => {
    moto = await startMoto({ region: REGION });
    dir = await mkdtemp(join(tmpdir(), "sm-injector-iam-"));
    const names = [
      // referenced by the api pod
      "erp/production/rds",
      "erp/production/rds-abcdef",
      "erp/production/api/jwt",
      "erp/production/redis",
      // referenced by the worker pod only
      "erp/production/worker",
      // referenced by nobody: siblings of every length and shape
      "erp/production/rds-admin",
      "erp/production/rds-a",
      "erp/production/rds-abcde",
      "erp/production/rds-abcdefg",
      "erp/production/rdsabcdef",
      "erp/production/rds-abcdef-x",
      "erp/production/rd",
      "erp/production/rds/admin",
      "erp/production/api/jwt-old",
      "erp/production/redis-cluster",
      "erp/staging/rds",
    ];
    for (const n of names) arns[n] = (await moto.createSecret(n, "{}")).arn;
    arns["us-east-1:erp/production/rds"] = (
      await moto.createSecret("erp/production/rds", "{}", { region: "us-east-1" })
    ).arn;
    const input = manifests({
      jwtArn: arns["erp/production/api/jwt"] as string,
      redisPartialArn: (arns["erp/production/redis"] as string).replace(/-[A-Za-z0-9]{6}$/, ""),
    });
    await writeFile(join(dir, "app.yaml"), input);
    const r = await cli([
      "iam-policy",
      "-f",
      join(dir, "app.yaml"),
      "--role-arn",
      `erp/erp-worker=${WORKER_ROLE}`,
      "--oidc-provider",
      `https://${ISSUER}`,
      "--rotation-role-arn",
      `arn:aws:iam::${ACCOUNT}:role/sm-injector-rotation`,
      "--batch-get-secret-value",
    ]);
    assert.equal(r.code, 0, r.stderr);
    report = JSON.parse(r.stdout);
    api = report.roles.find((x) => x.roleArn === API_ROLE) as Report["roles"][number];
    assert.ok(api, r.stdout);
  });
  after(async () => {
    await moto?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test("every secret of the pod, at its real ARN with the random suffix, is allowed", async () => {
    for (const n of [
      "erp/production/rds",
      "erp/production/rds-abcdef",
      "erp/production/api/jwt",
      "erp/production/redis",
    ]) {
      const arn = arns[n] as string;
      assert.match(arn, /-[A-Za-z0-9]{6}$/, "moto gives ARNs Secrets Manager's suffix");
      assert.equal(await verdict(api.policy, "secretsmanager:GetSecretValue", arn), "Allowed", n);
    }
  });

  test("siblings whose names merely start the same way (every length) and other secrets are denied", async () => {
    const denied = Object.keys(arns).filter(
      (n) =>
        ![
          "erp/production/rds",
          "erp/production/rds-abcdef",
          "erp/production/api/jwt",
          "erp/production/redis",
        ].includes(n),
    );
    assert.ok(denied.length >= 12);
    for (const n of denied)
      assert.equal(
        await verdict(api.policy, "secretsmanager:GetSecretValue", arns[n] as string),
        "ImplicitlyDenied",
        `${n} (${arns[n]})`,
      );
  });

  test("the grant of erp/production/rds alone matches its own ARN and no longer name, rds-abcdef included", async () => {
    const [read] = api.policy.Statement;
    assert.ok(read?.Resource);
    const only = {
      ...api.policy,
      Statement: [
        { ...read, Resource: read.Resource.filter((r) => r.endsWith(":secret:erp/production/rds-??????")) },
      ],
    } as Policy;
    assert.equal(only.Statement[0]?.Resource?.length, 1);
    assert.equal(
      await verdict(only, "secretsmanager:GetSecretValue", arns["erp/production/rds"] as string),
      "Allowed",
    );
    for (const n of Object.keys(arns).filter(
      (k) => k.startsWith("erp/production/rd") && k !== "erp/production/rds",
    ))
      assert.equal(
        await verdict(only, "secretsmanager:GetSecretValue", arns[n] as string),
        "ImplicitlyDenied",
        `${n} (${arns[n]})`,
      );
  });

  test("the same secret names in another account or partition are denied (even when that account allows the role)", async () => {
    const allowAll = {
      Version: "2012-10-17",
      Statement: [
        {
          Effect: "Allow",
          Principal: { AWS: API_ROLE },
          Action: "secretsmanager:GetSecretValue",
          Resource: "*",
        },
      ],
    };
    for (const n of [
      "erp/production/rds",
      "erp/production/rds-abcdef",
      "erp/production/api/jwt",
      "erp/production/redis",
    ]) {
      const foreign = (arns[n] as string).replace(`:${ACCOUNT}:`, `:${OTHER_ACCOUNT}:`);
      assert.equal(
        await verdict(api.policy, "secretsmanager:GetSecretValue", foreign, allowAll),
        "ImplicitlyDenied",
        foreign,
      );
      const china = (arns[n] as string).replace("arn:aws:", "arn:aws-cn:").replace(REGION, "cn-north-1");
      assert.equal(
        await verdict(api.policy, "secretsmanager:GetSecretValue", china),
        "ImplicitlyDenied",
        china,
      );
    }
    // Control: the same resource policy does let a grant for that account through.
    const granted = {
      ...api.policy,
      Statement: [
        {
          ...api.policy.Statement[0],
          Resource: [`arn:aws:secretsmanager:${REGION}:${OTHER_ACCOUNT}:secret:*`],
        },
      ],
    } as Policy;
    const foreign = (arns["erp/production/rds"] as string).replace(`:${ACCOUNT}:`, `:${OTHER_ACCOUNT}:`);
    assert.equal(await verdict(granted, "secretsmanager:GetSecretValue", foreign, allowAll), "Allowed");
  });

  test("the role may read nothing but values: no other action on its own secrets", async () => {
    const arn = arns["erp/production/rds"] as string;
    for (const action of [
      "secretsmanager:PutSecretValue",
      "secretsmanager:DescribeSecret",
      "secretsmanager:DeleteSecret",
    ])
      assert.equal(await verdict(api.policy, action, arn), "ImplicitlyDenied", action);
    // BatchGetSecretValue is allowed (only) because the webhook batches here.
    assert.equal(await verdict(api.policy, "secretsmanager:BatchGetSecretValue", "*"), "Allowed");
  });

  test("each role gets only its own pods' secrets", async () => {
    const worker = report.roles.find((x) => x.roleArn === WORKER_ROLE);
    assert.ok(worker);
    const w = worker.policy;
    assert.equal(
      await verdict(w, "secretsmanager:GetSecretValue", arns["erp/production/worker"] as string),
      "Allowed",
    );
    assert.equal(
      await verdict(w, "secretsmanager:GetSecretValue", arns["erp/production/rds"] as string),
      "ImplicitlyDenied",
    );
    assert.equal(
      await verdict(api.policy, "secretsmanager:GetSecretValue", arns["erp/production/worker"] as string),
      "ImplicitlyDenied",
    );
    assert.deepEqual(
      worker.trustPolicy?.Statement.map((s) => s.Principal),
      [{ Service: "pods.eks.amazonaws.com" }],
    );
  });

  test("the rotation controller may DescribeSecret the watched secrets, and not read them", async () => {
    const rc = report.rotationController;
    assert.ok(rc);
    for (const n of ["erp/production/rds", "erp/production/api/jwt"]) {
      const arn = arns[n] as string;
      assert.equal(await verdict(rc.policy, "secretsmanager:DescribeSecret", arn), "Allowed", n);
      assert.equal(await verdict(rc.policy, "secretsmanager:GetSecretValue", arn), "ImplicitlyDenied", n);
    }
    assert.equal(
      await verdict(rc.policy, "secretsmanager:DescribeSecret", arns["erp/production/worker"] as string),
      "ImplicitlyDenied",
      "the worker does not opt in to restart-on-rotation",
    );
  });

  test("parliament reports no finding on the permission policies", async () => {
    const policies = [...report.roles.map((r) => r.policy), report.rotationController?.policy];
    const kms = await cli([
      "iam-policy",
      "-f",
      join(dir, "app.yaml"),
      "--role-arn",
      `erp/erp-worker=${WORKER_ROLE}`,
      "--kms-key-arn",
      `arn:aws:kms:${REGION}:${ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab`,
    ]);
    assert.equal(kms.code, 0, kms.stderr);
    policies.push(...(JSON.parse(kms.stdout) as Report).roles.map((r) => r.policy));
    for (const p of policies) {
      assert.ok(p);
      const out = await runWithInput("parliament", ["--json"], { input: JSON.stringify(p) });
      assert.deepEqual(out, { code: 0, stdout: "", stderr: "" }, JSON.stringify(p));
    }
    // Control: parliament does report a wildcard grant.
    const wild = {
      Version: "2012-10-17",
      Statement: [{ Effect: "Allow", Action: "secretsmanager:GetSecretValue", Resource: "*" }],
    };
    const { code } = await runWithInput("parliament", ["--json"], { input: JSON.stringify(wild) });
    assert.equal(code, 1);
  });

  test("--output terraform is valid HCL in hclfmt's own layout", async () => {
    const r = await cli([
      "iam-policy",
      "-f",
      join(dir, "app.yaml"),
      "--role-arn",
      `erp/erp-worker=${WORKER_ROLE}`,
      "--oidc-provider",
      `arn:aws:iam::${ACCOUNT}:oidc-provider/${ISSUER}`,
      "--kms-key-arn",
      `arn:aws:kms:${REGION}:${ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab`,
      "--rotation-role-arn",
      `arn:aws:iam::${ACCOUNT}:role/sm-injector-rotation`,
      "--batch-get-secret-value",
      "--output",
      "terraform",
    ]);
    assert.equal(r.code, 0, r.stderr);
    const tf = join(dir, "iam.tf");
    await writeFile(tf, r.stdout);
    const bin = await hclfmt();
    const { stdout } = await execFileAsync(bin, ["-check", "-require-no-change", tf]);
    assert.equal(stdout, r.stdout);
    for (const label of [
      "erp-api",
      "erp-api_trust",
      "erp-worker",
      "erp-worker_trust",
      "sm_injector_rotation",
    ])
      assert.match(r.stdout, new RegExp(`^data "aws_iam_policy_document" "${label}" \\{$`, "m"));
    // Control: hclfmt does refuse broken HCL.
    await writeFile(tf, r.stdout.replace("statement {", "statement {{"));
    await assert.rejects(execFileAsync(bin, ["-check", tf]));
  });
});
