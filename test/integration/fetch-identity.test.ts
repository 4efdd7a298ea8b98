// The pod's own identity through the SDK's default chain: IRSA (web identity token file → STS
// AssumeRoleWithWebIdentity, served by moto) and EKS Pod Identity (a local credentials endpoint
// standing in for the node's agent); AWS_ENDPOINT_URL_SECRETS_MANAGER / _STS honoured.
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, beforeEach, describe, test } from "node:test";
import type { FetchSpecInput } from "../../src/contract/fetch-spec.ts";
import { type FaultProxy, startFaultProxy } from "../helpers/fault-proxy.ts";
import {
  fetchEnv,
  type Moto,
  runFetchCli,
  runFetchInProcess,
  startMoto,
  TEST_CREDENTIALS,
} from "../helpers/moto.ts";
import { sourceWithShell } from "../helpers/roundtrip.ts";

const GET = "secretsmanager.GetSecretValue";
const ASSUME = "sts.AssumeRoleWithWebIdentity";
const ROLE = "arn:aws:iam::123456789012:role/erp-api";
const DEAD = "http://127.0.0.1:9"; // discard port: nothing listens

/** A token shaped like a projected service-account token (moto checks the shape, not the signature). */
function serviceAccountToken(): string {
  const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const now = Math.floor(Date.now() / 1000);
  return [
    b64({ alg: "RS256", kid: "test" }),
    b64({
      iss: "https://oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE",
      sub: "system:serviceaccount:erp:erp-api",
      aud: ["sts.amazonaws.com"],
      iat: now,
      exp: now + 3600,
    }),
    Buffer.from("signature").toString("base64url"),
  ].join(".");
}

/** The node's EKS Pod Identity agent, on loopback: answers only the pod's authorization token. */
interface CredentialsServer {
  url: string;
  requests: string[];
  close(): Promise<void>;
}

async function startCredentialsServer(token: string): Promise<CredentialsServer> {
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    requests.push(String(req.headers.authorization ?? ""));
    if (req.headers.authorization !== token) {
      res.writeHead(401, { "content-type": "application/json" });
      res.end(JSON.stringify({ Message: "invalid authorization token" }));
      return;
    }
    res.writeHead(200, { "content-type": "application/json" });
    res.end(
      JSON.stringify({
        AccessKeyId: "ASIAPODIDENTITYEXAMPLE",
        SecretAccessKey: "pod-identity-secret",
        Token: "pod-identity-session-token",
        AccountId: "123456789012",
        Expiration: new Date(Date.now() + 3600_000).toISOString(),
      }),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/credentials`,
    requests,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

let moto: Moto;
let proxy: FaultProxy;
let scratch: string;
let runs = 0;

const ENTRIES: FetchSpecInput["entries"] = [
  {
    kind: "value",
    source: { secretId: "erp/production/database" },
    env: "DATABASE_URL",
    key: "DATABASE_URL",
  },
  { kind: "value", source: { secretId: "erp/staging/jwt/secret_key" }, env: "JWT_SECRET_KEY" },
  { kind: "expand", source: { secretId: "erp/production/aws/s3_app_user_credentials" }, prefix: "S3_" },
];

/** Env for a run without static keys: the identity comes from `identity`. */
async function setup(identity: NodeJS.ProcessEnv) {
  const dir = join(scratch, `run-${runs++}`);
  const outputDir = join(dir, "out");
  await mkdir(outputDir, { recursive: true });
  const spec: FetchSpecInput = {
    version: 1,
    format: "shell",
    outputDir,
    fileName: "env",
    fileMode: 0o400,
    timeoutSeconds: 20,
    entries: ENTRIES,
  };
  const env = fetchEnv(proxy.endpoint, dir, {
    SM_INJECTOR_SPEC: JSON.stringify(spec),
    AWS_ACCESS_KEY_ID: undefined,
    AWS_SECRET_ACCESS_KEY: undefined,
    ...identity,
  });
  return { dir, outputDir, file: join(outputDir, "env"), env };
}

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), "sm-injector-fetch-identity-"));
  moto = await startMoto();
  proxy = await startFaultProxy(moto.endpoint);
  await moto.createSecret(
    "erp/production/database",
    JSON.stringify({ DATABASE_URL: "postgresql://u:p@db/erp" }),
  );
  await moto.createSecret("erp/staging/jwt/secret_key", "jwt-secret");
  await moto.createSecret(
    "erp/production/aws/s3_app_user_credentials",
    JSON.stringify({ AWS_ACCESS_KEY_ID: "AKIAEXAMPLE", AWS_SECRET_ACCESS_KEY: "s3-secret" }),
  );
});

after(async () => {
  await proxy?.close();
  await moto?.stop();
  await rm(scratch, { recursive: true, force: true });
});

beforeEach(() => proxy.reset());

describe("IRSA: web identity token file → STS AssumeRoleWithWebIdentity", () => {
  async function irsa(opts: { token?: string } = {}) {
    const s = await setup({});
    const tokenFile = join(s.dir, "token");
    if (opts.token !== undefined) await writeFile(tokenFile, opts.token);
    s.env.AWS_ROLE_ARN = ROLE;
    s.env.AWS_WEB_IDENTITY_TOKEN_FILE = tokenFile;
    // Service-specific endpoints win over the general one, which goes nowhere.
    s.env.AWS_ENDPOINT_URL = DEAD;
    s.env.AWS_ENDPOINT_URL_SECRETS_MANAGER = proxy.endpoint;
    s.env.AWS_ENDPOINT_URL_STS = proxy.endpoint;
    return { ...s, tokenFile };
  }

  test("one AssumeRoleWithWebIdentity, then every GetSecretValue signed with the role's keys", async () => {
    const s = await irsa({ token: serviceAccountToken() });
    const r = await runFetchInProcess(s.env);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(proxy.count(ASSUME), 1);
    assert.equal(proxy.count(GET), 3);
    // AssumeRoleWithWebIdentity is unsigned; the three GetSecretValue calls use its temporary keys.
    assert.equal(proxy.accessKeys.length, 3);
    for (const k of proxy.accessKeys) {
      assert.notEqual(k, TEST_CREDENTIALS.AWS_ACCESS_KEY_ID);
      assert.match(k, /^ASIA/, "temporary keys from STS");
    }
    const got = await sourceWithShell("dash", s.file, ["DATABASE_URL", "JWT_SECRET_KEY"]);
    assert.equal(got.get("JWT_SECRET_KEY")?.toString(), "jwt-secret");
  });

  test("the CLI in a child process, as the init container runs it", async () => {
    const s = await irsa({ token: serviceAccountToken() });
    const r = await runFetchCli(s.env);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(proxy.count(ASSUME), 1);
    assert.equal(proxy.count(GET), 3);
    // Logs go to stdout; nothing else on stderr, e.g. no runtime or AWS SDK warning (the SDK's
    // NodeVersionSupportWarning on Node < 22) on the pinned Node.
    assert.equal(r.stderr, "");
  });

  test("the token file is missing: one line for all secrets, saying to check the IRSA setup", async () => {
    const s = await irsa();
    const r = await runFetchInProcess(s.env);
    assert.equal(r.code, 1);
    assert.equal(proxy.count(GET), 0);
    const lines = r.stderr.trimEnd().split("\n");
    assert.equal(lines.length, 1, r.stderr);
    assert.match(
      lines[0] ?? "",
      new RegExp(
        `^sm-injector fetch: 3 secrets \\(erp/production/database, erp/staging/jwt/secret_key, erp/production/aws/s3_app_user_credentials\\): no AWS credentials for us-east-1: ENOENT as ${ROLE} — cannot read the web identity token file ${s.tokenFile} \\(ENOENT\\).*check the IRSA setup`,
      ),
    );
    assert.deepEqual(await readdir(s.outputDir), []);
  });

  test("STS rejects the token (InvalidIdentityToken): the OIDC provider hint, no GetSecretValue", async () => {
    const s = await irsa({ token: serviceAccountToken() });
    proxy.always(ASSUME, {
      kind: "status",
      status: 400,
      type: "InvalidIdentityToken",
      message:
        "No OpenIDConnect provider found in your account for https://oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE",
    });
    const r = await runFetchInProcess(s.env);
    assert.equal(r.code, 1);
    assert.equal(proxy.count(GET), 0);
    assert.match(
      r.stderr,
      /InvalidIdentityTokenException as arn:aws:iam::123456789012:role\/erp-api — STS rejected the web identity token \(No OpenIDConnect provider found/,
    );
    assert.match(r.stderr, /check the IRSA setup/);
    assert.equal(r.stderr.trimEnd().split("\n").length, 1);
  });

  test("STS refuses the role (trust policy): AccessDenied with the trust-policy hint", async () => {
    const s = await irsa({ token: serviceAccountToken() });
    proxy.always(ASSUME, {
      kind: "access-denied",
      message: "Not authorized to perform sts:AssumeRoleWithWebIdentity",
    });
    const r = await runFetchInProcess(s.env);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /AccessDenied as .* — STS refused AssumeRoleWithWebIdentity .* trust policy must allow/,
    );
  });

  test("an expired token", async () => {
    const s = await irsa({ token: serviceAccountToken() });
    proxy.always(ASSUME, {
      kind: "status",
      status: 400,
      type: "ExpiredTokenException",
      message: "Token expired: current date/time 1 must be before the expiration date/time 0",
    });
    const r = await runFetchInProcess(s.env);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /ExpiredTokenException as .* — STS says the web identity token has expired/);
  });
});

describe("EKS Pod Identity: the container credentials endpoint", () => {
  const TOKEN = "eyJhbGciOiJFUzM4NCJ9.pod-identity-token.sig";
  let agent: CredentialsServer;

  before(async () => {
    agent = await startCredentialsServer(TOKEN);
  });
  after(() => agent?.close());
  beforeEach(() => {
    agent.requests.length = 0;
  });

  async function podIdentity(token: string, uri = agent.url) {
    const s = await setup({ AWS_CONTAINER_CREDENTIALS_FULL_URI: uri });
    const tokenFile = join(s.dir, "eks-pod-identity-token");
    await writeFile(tokenFile, token);
    s.env.AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE = tokenFile;
    return s;
  }

  test("credentials fetched once with the token file's content; calls signed with them", async () => {
    const s = await podIdentity(TOKEN);
    const r = await runFetchInProcess(s.env);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(agent.requests, [TOKEN]);
    assert.equal(proxy.count(GET), 3);
    assert.deepEqual(new Set(proxy.accessKeys), new Set(["ASIAPODIDENTITYEXAMPLE"]));
  });

  test("the agent refuses the token: exit 1 naming EKS Pod Identity", async () => {
    const s = await podIdentity("wrong-token");
    const r = await runFetchInProcess(s.env);
    assert.equal(r.code, 1);
    assert.equal(proxy.count(GET), 0);
    assert.ok(agent.requests.length >= 1);
    assert.match(
      r.stderr,
      /no AWS credentials for us-east-1: CredentialsProviderError as EKS Pod Identity — the EKS Pod Identity agent at http:\/\/127\.0\.0\.1:\d+\/v1\/credentials gave no credentials/,
    );
    assert.equal(r.stderr.trimEnd().split("\n").length, 1);
  });

  test("no agent listening: exit 1 naming the agent's address", async () => {
    const s = await podIdentity(TOKEN, `${DEAD}/v1/credentials`);
    const r = await runFetchInProcess(s.env);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /as EKS Pod Identity — the EKS Pod Identity agent at http:\/\/127\.0\.0\.1:9\/v1\/credentials gave no credentials .*eks-pod-identity-agent add-on runs on the node/,
    );
  });
});

describe("no identity at all", () => {
  test("exit 1: annotate the ServiceAccount or add a Pod Identity association", async () => {
    const s = await setup({});
    const r = await runFetchInProcess(s.env);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /no AWS credentials for us-east-1: CredentialsProviderError as the default credential chain — the pod has no AWS identity .*eks.amazonaws.com\/role-arn/,
    );
    assert.equal(proxy.count(GET), 0);
  });
});
