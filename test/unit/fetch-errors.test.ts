// The init container's error lines: secret, AWS code, identity, and a hint a new user can act on.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  AwsCallError,
  callErrorLine,
  credentialsErrorLine,
  identityFromEnv,
  type ProblemContext,
} from "../../src/fetch/errors.ts";

const ROLE = "arn:aws:iam::123456789012:role/app";
const irsa: ProblemContext = {
  identity: identityFromEnv({
    AWS_ROLE_ARN: ROLE,
    AWS_WEB_IDENTITY_TOKEN_FILE: "/var/run/secrets/eks.amazonaws.com/serviceaccount/token",
  }),
  timeoutSeconds: 30,
  defaultRegion: "eu-west-1",
};
const DB = { secretId: "erp/production/database" };

function line(code: string, message = "m", opts: { attempts?: number; atDeadline?: boolean } = {}) {
  return callErrorLine(
    DB,
    new AwsCallError(code, message, "call", opts.attempts ?? 1, opts.atDeadline),
    irsa,
  );
}

describe("identity in use", () => {
  test("IRSA, Pod Identity, static keys, nothing", () => {
    assert.equal(
      identityFromEnv({ AWS_ROLE_ARN: ROLE, AWS_WEB_IDENTITY_TOKEN_FILE: "/t" }).description,
      ROLE,
    );
    assert.equal(
      identityFromEnv({ AWS_CONTAINER_CREDENTIALS_FULL_URI: "http://169.254.170.23/v1/credentials" })
        .description,
      "EKS Pod Identity",
    );
    assert.equal(identityFromEnv({ AWS_ACCESS_KEY_ID: "AKIA" }).kind, "static");
    assert.equal(identityFromEnv({}).description, "the default credential chain");
    // AWS_ROLE_ARN alone does not make the SDK use web identity.
    assert.equal(identityFromEnv({ AWS_ROLE_ARN: ROLE }).kind, "default-chain");
  });
});

describe("GetSecretValue failures", () => {
  test("access denied: the exact line from the README", () => {
    assert.equal(
      line("AccessDeniedException", "User: arn:aws:sts::123456789012:assumed-role/app/x is not authorized"),
      `erp/production/database: AccessDeniedException as ${ROLE} — the role lacks secretsmanager:GetSecretValue on erp/production/database (check the IAM policy and the secret's resource policy) [access-denied]`,
    );
  });

  test("access denied by KMS points at kms:Decrypt", () => {
    assert.match(line("AccessDeniedException", "Access to KMS is not allowed"), /kms:Decrypt/);
    assert.match(line("DecryptionFailure"), /kms:Decrypt/);
  });

  test("not found: check the name and the region", () => {
    assert.match(
      line("ResourceNotFoundException"),
      /no secret named erp\/production\/database in region eu-west-1 \(check the name/,
    );
    const staged = callErrorLine(
      { ...DB, versionStage: "blue", region: "us-east-2" },
      new AwsCallError("ResourceNotFoundException", "m", "call", 1),
      irsa,
    );
    assert.match(
      staged,
      /^erp\/production\/database \(stage blue\): ResourceNotFoundException .* with stage blue in region us-east-2/,
    );
  });

  test("scheduled for deletion: restore it", () => {
    assert.match(
      line(
        "InvalidRequestException",
        "You tried to perform the operation on a secret that's currently marked deleted.",
      ),
      /scheduled for deletion; restore it \(aws secretsmanager restore-secret --secret-id erp\/production\/database\)/,
    );
  });

  test("throttled until the deadline", () => {
    assert.match(
      line("ThrottlingException", "Rate exceeded", { attempts: 6, atDeadline: true }),
      /ThrottlingException as .* — still throttled by Secrets Manager at the 30 s deadline, after 6 attempts/,
    );
  });

  test("no answer: the VPC endpoint and network policy", () => {
    assert.match(
      line("DeadlineExceeded", "", { atDeadline: true }),
      /within 30 s: check that the pod can reach Secrets Manager \(VPC endpoint, NAT, DNS, NetworkPolicy egress\)/,
    );
    assert.match(
      line("ECONNREFUSED", "connect ECONNREFUSED", { attempts: 8 }),
      /network error .* after 8 attempts .*VPC endpoint/,
    );
  });

  test("every line is one line", () => {
    for (const code of ["AccessDeniedException", "ResourceNotFoundException", "ThrottlingException", "Weird"])
      assert.ok(!line(code, "multi").includes("\n"));
  });
});

describe("credential failures: check the IRSA setup", () => {
  const cred = (code: string, message: string, ctx = irsa) =>
    credentialsErrorLine(
      undefined,
      ["erp/a", "erp/b"],
      new AwsCallError(code, message, "credentials", 0),
      ctx,
    );

  test("token file missing", () => {
    assert.match(
      cred("ENOENT", "ENOENT: no such file or directory"),
      /^2 secrets \(erp\/a, erp\/b\): no AWS credentials for eu-west-1: ENOENT as arn:aws:iam::123456789012:role\/app — cannot read the web identity token file \/var\/run\/secrets\/eks.amazonaws.com\/serviceaccount\/token .*check the IRSA setup/,
    );
  });

  test("invalid or expired token, trust policy", () => {
    assert.match(
      cred("InvalidIdentityToken", "No OpenIDConnect provider found"),
      /IAM OIDC provider .*check the IRSA setup/,
    );
    assert.match(cred("ExpiredTokenException", "Token expired"), /expired.*check the IRSA setup/);
    assert.match(
      cred("AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity"),
      /trust policy/,
    );
  });

  test("Pod Identity agent unreachable", () => {
    const ctx = {
      ...irsa,
      identity: identityFromEnv({
        AWS_CONTAINER_CREDENTIALS_FULL_URI: "http://169.254.170.23/v1/credentials",
      }),
    };
    assert.match(
      cred("ECONNREFUSED", "connect ECONNREFUSED", ctx),
      /as EKS Pod Identity — the EKS Pod Identity agent at http:\/\/169\.254\.170\.23\/v1\/credentials gave no credentials/,
    );
  });

  test("no identity at all", () => {
    const ctx = { ...irsa, identity: identityFromEnv({}) };
    assert.match(
      cred("CredentialsProviderError", "Could not load credentials from any providers", ctx),
      /eks.amazonaws.com\/role-arn/,
    );
  });
});
