// CloudTrail names the pod: the real bundle (`dist/sm-injector.mjs fetch`) assumes the IRSA role with
// a projected-token-like file, and the AssumeRoleWithWebIdentity request it sends (recorded by a
// proxy in front of moto's STS) carries RoleSessionName sm-injector.<namespace>.<pod>, from the
// variables the downward API sets. moto then puts that name in the caller ARN of the keys it issued.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import type { FetchSpecInput } from "../../src/contract/fetch-spec.ts";
import { fetchEnv, type Moto, startMoto } from "../helpers/moto.ts";
import { CLI } from "../helpers/webhook.ts";

const run = promisify(execFile);
const ROLE = "arn:aws:iam::123456789012:role/erp-api";

/** STS form bodies (awsQuery) the proxy forwarded, in order. */
interface Recorder {
  endpoint: string;
  stsCalls: URLSearchParams[];
  close(): Promise<void>;
}

async function startRecorder(target: string): Promise<Recorder> {
  const upstream = new URL(target);
  const stsCalls: URLSearchParams[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      if (!req.headers["x-amz-target"]) stsCalls.push(new URLSearchParams(body.toString("utf8")));
      const up = http.request(
        {
          host: upstream.hostname,
          port: upstream.port,
          method: req.method,
          path: req.url,
          headers: req.headers,
        },
        (ures) => {
          res.writeHead(ures.statusCode ?? 502, ures.headers);
          ures.pipe(res);
        },
      );
      up.on("error", () => req.socket.destroy());
      up.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    stsCalls,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** Shaped like a projected ServiceAccount token for the pod (moto checks the shape, not the signature). */
function projectedToken(namespace: string, pod: string): string {
  const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const now = Math.floor(Date.now() / 1000);
  return [
    b64({ alg: "RS256", kid: "test" }),
    b64({
      iss: "https://oidc.eks.us-east-1.amazonaws.com/id/EXAMPLE",
      sub: `system:serviceaccount:${namespace}:erp-api`,
      aud: ["sts.amazonaws.com"],
      "kubernetes.io": { namespace, pod: { name: pod, uid: "2f1c0e9a-0000-4000-8000-000000000001" } },
      iat: now,
      exp: now + 3600,
    }),
    Buffer.from("signature").toString("base64url"),
  ].join(".");
}

let moto: Moto;
let recorder: Recorder;
let scratch: string;
let runs = 0;

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), "sm-injector-session-name-"));
  moto = await startMoto();
  recorder = await startRecorder(moto.endpoint);
  await moto.createSecret("erp/staging/jwt/secret_key", "jwt-secret");
});

after(async () => {
  await recorder?.close();
  await moto?.stop();
  await rm(scratch, { recursive: true, force: true });
});

/** `dist/sm-injector.mjs fetch` as the injected init container runs it, with IRSA and the pod's names. */
async function fetchAsPod(namespace: string, pod: string, extra: NodeJS.ProcessEnv = {}) {
  const dir = join(scratch, `run-${runs++}`);
  const outputDir = join(dir, "out");
  await mkdir(outputDir, { recursive: true });
  const tokenFile = join(dir, "token");
  await writeFile(tokenFile, projectedToken(namespace, pod));
  const spec: FetchSpecInput = {
    version: 1,
    format: "shell",
    outputDir,
    fileName: "env",
    fileMode: 0o400,
    timeoutSeconds: 20,
    entries: [{ kind: "value", source: { secretId: "erp/staging/jwt/secret_key" }, env: "JWT_SECRET_KEY" }],
  };
  const env = fetchEnv(recorder.endpoint, dir, {
    SM_INJECTOR_SPEC: JSON.stringify(spec),
    AWS_ACCESS_KEY_ID: undefined,
    AWS_SECRET_ACCESS_KEY: undefined,
    AWS_ROLE_ARN: ROLE,
    AWS_WEB_IDENTITY_TOKEN_FILE: tokenFile,
    AWS_STS_REGIONAL_ENDPOINTS: "regional",
    POD_NAMESPACE: namespace,
    POD_NAME: pod,
    POD_SERVICE_ACCOUNT: "erp-api",
    ...extra,
  });
  const before = recorder.stsCalls.length;
  const r = await run(process.execPath, [CLI, "fetch"], { env, encoding: "utf8" }).then(
    (ok) => ({ code: 0, stdout: ok.stdout, stderr: ok.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => e,
  );
  const calls = recorder.stsCalls.slice(before);
  const logs = r.stdout
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  return { ...r, calls, logs };
}

describe("the IRSA session name names the pod (the request CloudTrail records)", () => {
  test("AssumeRoleWithWebIdentity carries RoleSessionName sm-injector.<namespace>.<pod>", async () => {
    const r = await fetchAsPod("erp", "erp-api-7d9f8b6c4d-x2k9p");
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.calls.length, 1);
    const call = r.calls[0] as URLSearchParams;
    assert.equal(call.get("Action"), "AssumeRoleWithWebIdentity");
    assert.equal(call.get("RoleArn"), ROLE);
    assert.equal(call.get("RoleSessionName"), "sm-injector.erp.erp-api-7d9f8b6c4d-x2k9p");
    // The init container's log says which session name it used, next to the pod's names.
    const fetched = r.logs.find((l) => l.msg === "fetched secret");
    assert.equal(fetched?.roleSessionName, "sm-injector.erp.erp-api-7d9f8b6c4d-x2k9p");
    assert.equal(fetched?.pod, "erp-api-7d9f8b6c4d-x2k9p");
  });

  test("a name over 64 characters: cut with a hash, accepted by STS, different for each pod", async () => {
    const pod = "settlement-reconciliation-worker-with-a-long-name-7d9f8b6c4d-";
    const a = await fetchAsPod("payments-production", `${pod}aaaaa`);
    const b = await fetchAsPod("payments-production", `${pod}bbbbb`);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(b.code, 0, b.stderr);
    const nameA = a.calls[0]?.get("RoleSessionName") ?? "";
    const nameB = b.calls[0]?.get("RoleSessionName") ?? "";
    assert.equal(nameA.length, 64);
    assert.match(nameA, /^sm-injector\.payments-production\.settlement-reconcilia_[0-9a-f]{10}$/);
    assert.notEqual(nameA, nameB);
  });

  test("an AWS_ROLE_SESSION_NAME in the environment does not replace the pod's names", async () => {
    const r = await fetchAsPod("erp", "erp-api-0", {
      AWS_ROLE_SESSION_NAME: "sm-injector.other-team.their-pod",
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.calls[0]?.get("RoleSessionName"), "sm-injector.erp.erp-api-0");
  });
});
