// The pure parts of `sm-injector iam-policy`: ARNs, the policy builder, roles from manifests (through
// the webhook's own decision) and the Terraform renderer. The real evaluators judge the output in
// test/integration/iam-policy.test.ts.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { InjectorConfigSchema } from "../../src/contract/config.ts";
import { oidcProviderArn, parseOidcProvider, parseRoleArn, secretGrant } from "../../src/iam/arn.ts";
import { buildRolePolicies, checkKmsKeyArns, type RoleNeeds } from "../../src/iam/policy.ts";
import { buildReport, type ReportOptions, reportTerraform } from "../../src/iam/report.ts";
import { hclString, terraformLabel } from "../../src/iam/terraform.ts";
import { entryVariables, podFetchesOf } from "../../src/inject/pod-fetch.ts";

const AT = { partition: "aws" as const, account: "111122223333" };
const ROLE = "arn:aws:iam::111122223333:role/erp-api";
const role = () => {
  const r = parseRoleArn(ROLE);
  assert.ok(r.ok);
  return r.value;
};
const config = InjectorConfigSchema.parse({ image: "sm-injector:test" });
const options = (o: Partial<ReportOptions> = {}): ReportOptions => ({ roleArns: [], kmsKeyArns: [], ...o });

describe("iam-policy: secret resources", () => {
  test("a name becomes its ARN with IAM's six-character suffix pattern, in the role's account", () => {
    assert.deepEqual(secretGrant("erp/production/rds", "eu-west-1", AT), {
      ok: true,
      value: {
        resource: "arn:aws:secretsmanager:eu-west-1:111122223333:secret:erp/production/rds-??????",
        region: "eu-west-1",
        account: "111122223333",
        exact: false,
      },
    });
  });
  test("--account changes the account of names", () => {
    const g = secretGrant("erp/x", "eu-west-1", { ...AT, account: "444455556666" });
    assert.ok(g.ok);
    assert.equal(g.value.resource, "arn:aws:secretsmanager:eu-west-1:444455556666:secret:erp/x-??????");
  });
  test("a full ARN is granted as written; a partial ARN (no suffix) gets the pattern", () => {
    const full = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:erp/production/rds-AbC123";
    const g = secretGrant(full, "eu-west-1", AT);
    assert.ok(g.ok);
    assert.equal(g.value.resource, full);
    const partial = secretGrant(
      "arn:aws:secretsmanager:eu-west-1:111122223333:secret:erp/production/rds",
      undefined,
      AT,
    );
    assert.ok(partial.ok);
    assert.equal(
      partial.value.resource,
      "arn:aws:secretsmanager:eu-west-1:111122223333:secret:erp/production/rds-??????",
    );
  });
  test("a secret an AWS service manages (rds!db-…) is granted like any other, its prefix only in front", () => {
    const g = secretGrant("rds!db-1a96bebc-86c1-4982-9f9f-7d6a651d2464", "eu-west-1", AT);
    assert.ok(g.ok);
    assert.equal(
      g.value.resource,
      "arn:aws:secretsmanager:eu-west-1:111122223333:secret:rds!db-1a96bebc-86c1-4982-9f9f-7d6a651d2464-??????",
    );
    const arn = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:rds!cluster-0a1b-AbC123";
    assert.deepEqual(secretGrant(arn, undefined, AT), {
      ok: true,
      value: { resource: arn, region: "eu-west-1", account: "111122223333", exact: true },
    });
    for (const bad of ["rds!*", "rds!db-?", "RDS!db", "!db", "a!b!c", "rds!", "erp/rds!x"])
      assert.equal(secretGrant(bad, "eu-west-1", AT).ok, false, bad);
    assert.equal(
      secretGrant("arn:aws:secretsmanager:eu-west-1:111122223333:secret:rds!*", undefined, AT).ok,
      false,
    );
  });
  test("names with IAM wildcards or any character Secrets Manager refuses never reach a policy", () => {
    for (const bad of [
      "erp/*",
      "erp/rds?",
      "erp/rds-*",
      "erp rds",
      "erp/%",
      'erp/"x',
      // biome-ignore lint/suspicious/noTemplateCurlyInString: a literal IAM policy variable is the point
      "erp/${aws:username}",
      "",
    ]) {
      const g = secretGrant(bad, "eu-west-1", AT);
      assert.equal(g.ok, false, bad);
    }
    assert.equal(
      secretGrant("arn:aws:secretsmanager:eu-west-1:111122223333:secret:erp/*", undefined, AT).ok,
      false,
    );
    assert.equal(
      secretGrant("arn:aws:secretsmanager:eu-west-1:111122223333:secret:erp/??????", undefined, AT).ok,
      false,
    );
  });
  test("partitions: from the role; a secret of another partition is refused", () => {
    const cn = secretGrant("erp/x", "cn-north-1", AT);
    assert.equal(cn.ok, false);
    assert.match((cn as { error: string }).error, /partition aws-cn.*partition aws/);
    const gov = secretGrant("erp/x", "us-gov-west-1", { partition: "aws-us-gov", account: "111122223333" });
    assert.ok(gov.ok);
    assert.equal(
      gov.value.resource,
      "arn:aws-us-gov:secretsmanager:us-gov-west-1:111122223333:secret:erp/x-??????",
    );
    assert.equal(
      secretGrant("arn:aws-cn:secretsmanager:cn-north-1:111122223333:secret:x", undefined, AT).ok,
      false,
    );
  });
});

describe("iam-policy: roles and OIDC providers", () => {
  test("role ARNs: partition and account from the ARN; paths allowed; anything else refused", () => {
    const r = parseRoleArn("arn:aws-cn:iam::111122223333:role/team/app/erp-api");
    assert.ok(r.ok);
    assert.deepEqual(r.value, {
      arn: "arn:aws-cn:iam::111122223333:role/team/app/erp-api",
      partition: "aws-cn",
      account: "111122223333",
      name: "erp-api",
    });
    for (const bad of [
      "arn:aws:iam::111122223333:user/erp-api",
      "arn:aws:iam::1111:role/erp-api",
      "arn:aws:iam:eu-west-1:111122223333:role/erp-api",
      "arn:aws-iso:iam::111122223333:role/erp-api",
      "arn:aws:iam::111122223333:role/erp*",
      "erp-api",
    ])
      assert.equal(parseRoleArn(bad).ok, false, bad);
  });
  test("--oidc-provider: issuer URL, bare issuer or provider ARN, all to the provider in the role's account", () => {
    const issuer = "oidc.eks.eu-west-1.amazonaws.com/id/ABC";
    for (const text of [`https://${issuer}`, issuer, `arn:aws:iam::111122223333:oidc-provider/${issuer}`]) {
      const p = parseOidcProvider(text);
      assert.ok(p.ok, text);
      assert.equal(p.value.issuer, issuer);
      assert.deepEqual(oidcProviderArn(p.value, role()), {
        ok: true,
        value: `arn:aws:iam::111122223333:oidc-provider/${issuer}`,
      });
    }
    const foreign = parseOidcProvider(`arn:aws:iam::444455556666:oidc-provider/${issuer}`);
    assert.ok(foreign.ok);
    assert.equal(oidcProviderArn(foreign.value, role()).ok, false);
    for (const bad of ['https://x/"y', "oidc.example.com/id/*", "", "https://a b"])
      assert.equal(parseOidcProvider(bad).ok, false, bad);
  });
  test("--kms-key-arn: key ARNs only (an alias does not authorize kms:Decrypt)", () => {
    assert.deepEqual(
      checkKmsKeyArns(["arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"], "aws"),
      [],
    );
    assert.equal(checkKmsKeyArns(["arn:aws:kms:eu-west-1:111122223333:alias/app"], "aws").length, 1);
    assert.equal(checkKmsKeyArns(["arn:aws:kms:eu-west-1:111122223333:key/*"], "aws").length, 1);
  });
});

describe("iam-policy: the policy builder", () => {
  const needs = (o: Partial<RoleNeeds> = {}): RoleNeeds => ({
    role: role(),
    irsa: [{ namespace: "erp", name: "erp-api", audience: "sts.amazonaws.com" }],
    podIdentity: [],
    pods: ["document 2 (Deployment erp-api)"],
    secrets: [
      { secretId: "erp/z", region: "eu-west-1" },
      { secretId: "erp/a", region: "eu-west-1" },
      { secretId: "erp/z", region: "eu-west-1" },
    ],
    batch: false,
    ...o,
  });
  test("GetSecretValue on exactly the secrets, sorted and once each; nothing else without batch or KMS", () => {
    const r = buildRolePolicies(needs(), { kmsKeyArns: [] });
    assert.ok(r.ok);
    assert.deepEqual(r.value.policy, {
      Version: "2012-10-17",
      Statement: [
        {
          Sid: "ReadPodSecrets",
          Effect: "Allow",
          Action: ["secretsmanager:GetSecretValue"],
          Resource: [
            "arn:aws:secretsmanager:eu-west-1:111122223333:secret:erp/a-??????",
            "arn:aws:secretsmanager:eu-west-1:111122223333:secret:erp/z-??????",
          ],
        },
      ],
    });
    assert.equal(r.value.trustPolicy, undefined);
    assert.ok(r.value.notes.some((n) => n.includes("--oidc-provider")));
    assert.ok(r.value.notes.some((n) => n.includes("--kms-key-arn")));
  });
  test("BatchGetSecretValue (Resource *) only when batching is on; kms:Decrypt limited to these secrets", () => {
    const key = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    const r = buildRolePolicies(needs({ batch: true }), { kmsKeyArns: [key] });
    assert.ok(r.ok);
    const [, batch, kms] = r.value.policy.Statement;
    assert.deepEqual(batch, {
      Sid: "BatchReadPodSecrets",
      Effect: "Allow",
      Action: ["secretsmanager:BatchGetSecretValue"],
      Resource: ["*"],
    });
    assert.deepEqual(kms?.Resource, [key]);
    assert.deepEqual(kms?.Condition, {
      StringLike: { "kms:EncryptionContext:SecretARN": r.value.policy.Statement[0]?.Resource },
    });
  });
  test("IRSA trust: the provider, every ServiceAccount as sub, the tokens' audiences; Pod Identity: the EKS agent", () => {
    const provider = parseOidcProvider("https://oidc.eks.eu-west-1.amazonaws.com/id/ABC");
    assert.ok(provider.ok);
    const r = buildRolePolicies(
      needs({
        irsa: [
          { namespace: "erp", name: "worker", audience: "sts.amazonaws.com" },
          { namespace: "erp", name: "erp-api", audience: "sts.amazonaws.com" },
        ],
        podIdentity: [{ namespace: "batch", name: "export" }],
      }),
      { kmsKeyArns: [], oidcProvider: provider.value },
    );
    assert.ok(r.ok);
    assert.deepEqual(r.value.trustPolicy?.Statement, [
      {
        Sid: "ServiceAccountsWithIrsa",
        Effect: "Allow",
        Principal: {
          Federated: "arn:aws:iam::111122223333:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/ABC",
        },
        Action: ["sts:AssumeRoleWithWebIdentity"],
        Condition: {
          StringEquals: {
            "oidc.eks.eu-west-1.amazonaws.com/id/ABC:aud": ["sts.amazonaws.com"],
            "oidc.eks.eu-west-1.amazonaws.com/id/ABC:sub": [
              "system:serviceaccount:erp:erp-api",
              "system:serviceaccount:erp:worker",
            ],
          },
        },
      },
      {
        Sid: "EksPodIdentity",
        Effect: "Allow",
        Principal: { Service: "pods.eks.amazonaws.com" },
        Action: ["sts:AssumeRole", "sts:TagSession"],
      },
    ]);
    assert.deepEqual(r.value.serviceAccounts, ["batch/export", "erp/erp-api", "erp/worker"]);
  });
  test("every bad secret is reported at once, naming the role", () => {
    const r = buildRolePolicies(
      needs({
        secrets: [
          { secretId: "erp/*", region: "eu-west-1" },
          { secretId: "erp/x", region: "cn-north-1" },
        ],
      }),
      { kmsKeyArns: ["alias/x"] },
    );
    assert.equal(r.ok, false);
    const lines = (r as { error: string }).error.split("\n");
    assert.equal(lines.length, 3);
    assert.ok(lines.slice(0, 2).every((l) => l.startsWith(`role ${ROLE}:`)));
  });
  test("a secret in another account gets a note on its resource policy and key", () => {
    const r = buildRolePolicies(
      needs({
        secrets: [{ secretId: "arn:aws:secretsmanager:eu-west-1:444455556666:secret:shared/x-AbCdEf" }],
      }),
      { kmsKeyArns: [] },
    );
    assert.ok(r.ok);
    assert.ok(r.value.notes.some((n) => n.includes("resource policy")));
  });
  test("a policy over IAM's size limit says so", () => {
    const secrets = Array.from({ length: 120 }, (_, i) => ({
      secretId: `erp/production/service-${i}/credentials`,
      region: "eu-west-1",
    }));
    const r = buildRolePolicies(needs({ secrets }), { kmsKeyArns: [] });
    assert.ok(r.ok);
    assert.ok(r.value.notes.some((n) => /IAM allows 6144/.test(n)));
  });
});

const SA = (name: string, annotations = "") => `
apiVersion: v1
kind: ServiceAccount
metadata: { name: ${name}, namespace: erp${annotations ? `, annotations: { ${annotations} }` : ""} }
`;
const deployment = (
  name: string,
  sa: string,
  annotations: string,
  container = "{ name: app, image: app:1 }",
) => `
apiVersion: apps/v1
kind: Deployment
metadata: { name: ${name}, namespace: erp }
spec:
  template:
    metadata:
      labels: { sm-injector.io/inject: "true" }
      annotations: { sm-injector.io/region: eu-west-1, ${annotations} }
    spec:
      serviceAccountName: ${sa}
      containers: [${container}]
`;
const docs = (...d: string[]) => d.join("---\n");

async function report(text: string, o: Partial<ReportOptions> = {}) {
  const read = await podFetchesOf(text, config);
  const built = buildReport(options(o), read.pods);
  return { ...built, errors: [...read.errors, ...built.errors] };
}

describe("iam-policy: roles from manifests, through the webhook's decision", () => {
  test("the ServiceAccount's role, with its token audience in the trust policy", async () => {
    const r = await report(
      docs(
        SA("api", `eks.amazonaws.com/role-arn: "${ROLE}", eks.amazonaws.com/audience: my-aud`),
        deployment("api", "api", `sm-injector.io/env.A: "erp/a", sm-injector.io/env-from: "erp/b?prefix=B_"`),
      ),
      { oidcProvider: "oidc.eks.eu-west-1.amazonaws.com/id/ABC" },
    );
    assert.deepEqual(r.errors, []);
    assert.equal(r.report.roles.length, 1);
    assert.deepEqual(r.report.roles[0]?.policy.Statement[0]?.Resource, [
      "arn:aws:secretsmanager:eu-west-1:111122223333:secret:erp/a-??????",
      "arn:aws:secretsmanager:eu-west-1:111122223333:secret:erp/b-??????",
    ]);
    assert.deepEqual(
      r.report.roles[0]?.trustPolicy?.Statement[0]?.Condition?.StringEquals?.[
        "oidc.eks.eu-west-1.amazonaws.com/id/ABC:aud"
      ],
      ["my-aud"],
    );
  });
  test("a container's own AWS_ROLE_ARN is the role the init container copies", async () => {
    const r = await report(
      deployment(
        "api",
        "api",
        `sm-injector.io/env.A: erp/a`,
        `{ name: app, image: app:1, env: [{ name: AWS_ROLE_ARN, value: "arn:aws:iam::111122223333:role/own" }, { name: AWS_WEB_IDENTITY_TOKEN_FILE, value: /var/run/secrets/eks.amazonaws.com/serviceaccount/token }] }`,
      ),
    );
    assert.deepEqual(r.errors, []);
    assert.equal(r.report.roles[0]?.roleArn, "arn:aws:iam::111122223333:role/own");
  });
  test("a pod without a role is an error that says both ways to fix it", async () => {
    const r = await report(docs(SA("api"), deployment("api", "api", `sm-injector.io/env.A: erp/a`)));
    assert.equal(r.errors.length, 1);
    assert.match(r.errors[0] as string, /no IAM role for ServiceAccount erp\/api/);
    assert.match(r.errors[0] as string, /eks\.amazonaws\.com\/role-arn/);
    assert.match(r.errors[0] as string, /--role-arn erp\/api=arn:aws:iam::ACCOUNT:role\/NAME/);
  });
  test("--role-arn per ServiceAccount, or one for every pod without a role (EKS Pod Identity)", async () => {
    const text = docs(
      deployment("a", "a", `sm-injector.io/env.A: erp/a`),
      deployment("b", "b", `sm-injector.io/env.B: erp/b`),
    );
    const r = await report(text, {
      roleArns: ["erp/a=arn:aws:iam::111122223333:role/a", "arn:aws:iam::111122223333:role/rest"],
    });
    assert.deepEqual(r.errors, []);
    assert.deepEqual(
      r.report.roles.map((x) => [x.roleArn, x.serviceAccounts]),
      [
        ["arn:aws:iam::111122223333:role/a", ["erp/a"]],
        ["arn:aws:iam::111122223333:role/rest", ["erp/b"]],
      ],
    );
  });
  test("--role-arn that contradicts the ServiceAccount's role is refused", async () => {
    const r = await report(
      docs(
        SA("api", `eks.amazonaws.com/role-arn: "${ROLE}"`),
        deployment("api", "api", `sm-injector.io/env.A: erp/a`),
      ),
      {
        roleArns: ["erp/api=arn:aws:iam::111122223333:role/other"],
      },
    );
    assert.match(r.errors.join("\n"), /names another role/);
  });
  test("a role ARN on a ServiceAccount that is not one is reported, not written", async () => {
    const r = await report(
      docs(
        SA("api", `eks.amazonaws.com/role-arn: "arn:aws:iam::111122223333:role/*"`),
        deployment("api", "api", `sm-injector.io/env.A: erp/a`),
      ),
    );
    assert.match(r.errors.join("\n"), /is not an IAM role ARN/);
  });
  test("a pod the webhook refuses is an error with the webhook's message", async () => {
    const r = await podFetchesOf(deployment("api", "api", `sm-injector.io/env.A: "erp/*"`), config);
    assert.equal(r.pods.length, 0);
    assert.match(
      r.errors.join("\n"),
      /document 1 \(Deployment api\): sm-injector: .*Secrets Manager names cannot contain/s,
    );
  });
  test("the output does not depend on the order of the input", async () => {
    const parts = [
      SA("a", `eks.amazonaws.com/role-arn: "arn:aws:iam::111122223333:role/a"`),
      SA("b", `eks.amazonaws.com/role-arn: "arn:aws:iam::111122223333:role/a"`),
      deployment("a", "a", `sm-injector.io/env.A: erp/a, sm-injector.io/env.C: erp/c`),
      deployment("b", "b", `sm-injector.io/env.B: erp/b`),
    ];
    const one = await report(docs(...parts), { oidcProvider: "oidc.example.com/id/X" });
    const two = await report(docs(...[...parts].reverse()), { oidcProvider: "oidc.example.com/id/X" });
    const strip = (r: typeof one) => JSON.stringify(r.report.roles.map(({ pods: _, ...rest }) => rest));
    assert.deepEqual(one.errors, []);
    assert.equal(strip(one), strip(two));
  });
  test("the rotation controller watches only opted-in pods' references that do not pin a versionId", async () => {
    const r = await report(
      docs(
        SA("a", `eks.amazonaws.com/role-arn: "${ROLE}"`),
        deployment(
          "a",
          "a",
          `sm-injector.io/restart-on-rotation: "true", sm-injector.io/env.A: erp/a, sm-injector.io/env.P: "erp/pinned?versionId=01234567-89ab-cdef-0123-456789abcdef"`,
        ),
        deployment("b", "a", `sm-injector.io/env.B: erp/b`),
      ),
      { rotationRoleArn: "arn:aws:iam::111122223333:role/rotation" },
    );
    assert.deepEqual(r.errors, []);
    assert.deepEqual(r.report.rotationController?.policy.Statement[0]?.Resource, [
      "arn:aws:secretsmanager:eu-west-1:111122223333:secret:erp/a-??????",
    ]);
  });
  test("every kind of fetch entry must say which variables it sets", () => {
    assert.throws(() => entryVariables({ kind: "future" } as never), /unknown fetch entry kind "future"/);
  });
});

describe("iam-policy: Terraform", () => {
  test("strings: HCL escapes, and ${ and %{ stay literal", () => {
    assert.equal(hclString('a"b\\c'), '"a\\"b\\\\c"');
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a literal IAM policy variable is the point
    assert.equal(hclString("x${aws:username}%{if}"), '"x$${aws:username}%%{if}"');
    assert.equal(hclString("l1\nl2\t\b\u2028"), '"l1\\nl2\\t\\u0008\\u2028"');
  });
  test("labels are valid and unique", () => {
    const taken = new Set<string>();
    assert.equal(terraformLabel("erp-api", taken), "erp-api");
    assert.equal(terraformLabel("erp-api", taken), "erp-api_2");
    assert.equal(terraformLabel("9.app+x", taken), "_9_app_x");
  });
  test("names from the input cannot escape a comment", async () => {
    const r = await report(
      docs(
        SA("api", `eks.amazonaws.com/role-arn: "${ROLE}"`),
        deployment('"x\\ndata \\"evil\\" {"', "api", `sm-injector.io/env.A: erp/a`),
      ),
    );
    assert.deepEqual(r.errors, []);
    const tf = reportTerraform(r.report, "in.yaml\nresource x {");
    assert.ok(!/^data "evil"/m.test(tf) && !/^resource/m.test(tf), tf);
  });
});
