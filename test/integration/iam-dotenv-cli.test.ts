// The built CLI's `iam-policy` and `dotenv`: exit codes like `inject` (0 written, 1 a pod cannot be
// served, 2 usage), stdin, the .env git-ignore warning with real git, and neither command touching AWS.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { runCli } from "../helpers/cli.ts";

const ROLE = "arn:aws:iam::111122223333:role/erp-api";

const APP = `
apiVersion: v1
kind: ServiceAccount
metadata: { name: erp-api, namespace: erp, annotations: { eks.amazonaws.com/role-arn: "${ROLE}" } }
---
apiVersion: apps/v1
kind: Deployment
metadata: { name: erp-api, namespace: erp }
spec:
  template:
    metadata:
      labels: { sm-injector.io/inject: "true" }
      annotations:
        sm-injector.io/region: eu-west-1
        sm-injector.io/env.DATABASE_URL: erp/production/database#DATABASE_URL
    spec:
      serviceAccountName: erp-api
      containers: [{ name: api, image: api:1 }]
`;
const NO_ROLE = APP.split("---\n")[1] as string;

const cli = runCli;

describe("iam-policy and dotenv on the command line", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "sm-injector-cli-"));
    await writeFile(join(dir, "app.yaml"), APP);
    await writeFile(join(dir, "no-role.yaml"), NO_ROLE);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test("help names both commands, and each has its own", async () => {
    const top = await cli(["help"]);
    assert.match(top.stdout, /sm-injector iam-policy -f FILE\|-/);
    assert.match(top.stdout, /sm-injector dotenv -f FILE\|-/);
    for (const c of ["iam-policy", "dotenv"]) {
      const r = await cli(["help", c]);
      assert.equal(r.code, 0);
      assert.match(r.stdout, new RegExp(`^sm-injector ${c} -f FILE\\|- \\[flags\\]`));
    }
  });

  test("iam-policy: the policy from stdin, exit 0", async () => {
    const r = await cli(["iam-policy", "-f", "-"], { input: APP });
    assert.equal(r.code, 0, r.stderr);
    const report = JSON.parse(r.stdout);
    assert.deepEqual(report.roles[0].policy.Statement[0].Resource, [
      "arn:aws:secretsmanager:eu-west-1:111122223333:secret:erp/production/database-??????",
    ]);
  });

  test("iam-policy: usage errors exit 2", async () => {
    for (const args of [
      ["iam-policy"],
      ["iam-policy", "-f", "app.yaml", "--output", "yaml"],
      ["iam-policy", "-f", "app.yaml", "--account", "12"],
      ["iam-policy", "-f", join(dir, "missing.yaml")],
      ["iam-policy", "-f", "app.yaml", "--bogus"],
    ]) {
      const r = await cli(args, { cwd: dir });
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, /^sm-injector iam-policy: /, "the command's own usage error");
      assert.equal(r.stdout, "");
    }
  });

  test("iam-policy: a pod without a role exits 1, prints nothing, and says how to fix it", async () => {
    const r = await cli(["iam-policy", "-f", join(dir, "no-role.yaml")]);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, "");
    assert.match(
      r.stderr,
      /^error: document 1 \(Deployment erp-api\): no IAM role for ServiceAccount erp\/erp-api/m,
    );
    const fixed = await cli([
      "iam-policy",
      "-f",
      join(dir, "no-role.yaml"),
      "--role-arn",
      `erp/erp-api=${ROLE}`,
    ]);
    assert.equal(fixed.code, 0, fixed.stderr);
    assert.match(fixed.stdout, /pods\.eks\.amazonaws\.com/);
  });

  test("iam-policy: a pod the webhook would refuse exits 1 with its message", async () => {
    const r = await cli(["iam-policy", "-f", "-"], { input: APP.replace("#DATABASE_URL", "#") });
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /error: document 2 \(Deployment erp-api\): sm-injector: 1 problem with this pod's annotations/,
    );
  });

  test("dotenv: writes .env.example; warns in a git work tree where .env is not ignored, and only there", async () => {
    const repo = join(dir, "repo");
    await mkdir(repo);
    await promisify(execFile)("git", ["init", "-q", repo]);
    const first = await cli(["dotenv", "-f", join(dir, "app.yaml")], { cwd: repo });
    assert.equal(first.code, 0, first.stderr);
    assert.match(await readFile(join(repo, ".env.example"), "utf8"), /^DATABASE_URL=$/m);
    assert.match(first.stderr, /^warning: .*\/repo\/\.env is not git-ignored: add \.env to \.gitignore/m);

    await writeFile(join(repo, ".gitignore"), ".env\n");
    const ignored = await cli(["dotenv", "-f", join(dir, "app.yaml")], { cwd: repo });
    assert.equal(ignored.code, 0);
    assert.equal(ignored.stderr, "");

    const plain = join(dir, "plain");
    await mkdir(plain);
    const outside = await cli(["dotenv", "-f", join(dir, "app.yaml"), "-o", join(plain, ".env.example")], {
      cwd: plain,
      env: { GIT_CEILING_DIRECTORIES: dir },
    });
    assert.equal(outside.code, 0);
    assert.equal(outside.stderr, "", "not a git work tree: nothing to say");
  });

  test("dotenv: never overwrites .env; -o - prints; a refused pod exits 1", async () => {
    const env = await cli(["dotenv", "-f", join(dir, "app.yaml"), "-o", join(dir, ".env")]);
    assert.equal(env.code, 2);
    assert.match(env.stderr, /refusing to write .*\.env/);
    const out = await cli(["dotenv", "-f", "-", "-o", "-"], {
      input: APP,
      cwd: dir,
      env: { GIT_CEILING_DIRECTORIES: dir },
    });
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stdout, /^DATABASE_URL=$/m);
    const refused = await cli(["dotenv", "-f", "-", "-o", "-"], { input: APP.replace("#DATABASE_URL", "#") });
    assert.equal(refused.code, 1);
    assert.equal(refused.stdout, "");
  });

  test("neither command calls AWS, even with credentials and endpoints set", async () => {
    let connections = 0;
    const server = http.createServer((_, res) => res.end("{}"));
    server.on("connection", () => {
      connections++;
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const env = {
      AWS_ACCESS_KEY_ID: "testing",
      AWS_SECRET_ACCESS_KEY: "testing",
      AWS_REGION: "eu-west-1",
      AWS_ENDPOINT_URL: endpoint,
      AWS_ENDPOINT_URL_SECRETS_MANAGER: endpoint,
      AWS_ENDPOINT_URL_STS: endpoint,
      GIT_CEILING_DIRECTORIES: dir,
    };
    try {
      const a = await cli(["dotenv", "-f", join(dir, "app.yaml"), "-o", "-"], { cwd: dir, env });
      const b = await cli(["iam-policy", "-f", join(dir, "app.yaml")], { cwd: dir, env });
      assert.deepEqual([a.code, b.code], [0, 0]);
    } finally {
      server.close();
    }
    assert.equal(connections, 0);
  });
});
