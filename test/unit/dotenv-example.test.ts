// `sm-injector dotenv`'s .env.example read back by the real readers: python-dotenv (and
// pydantic-settings, which reads env_file through it) and Node's parser. Every variable a pod
// receives is there, with an empty value; every reference is a comment, whatever its JSON key holds.
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { parseEnv } from "node:util";
import { envExample } from "../../src/cli/dotenv.ts";
import { InjectorConfigSchema } from "../../src/contract/config.ts";
import { podFetchesOf } from "../../src/inject/pod-fetch.ts";
import { parseWithPythonDotenv, run } from "../helpers/roundtrip.ts";

const config = InjectorConfigSchema.parse({ image: "sm-injector:test", defaultRegion: "eu-west-1" });

const pod = (name: string, annotations: string, containers = "[{ name: app, image: app:1 }]", extra = "") => `
apiVersion: apps/v1
kind: Deployment
metadata: { name: ${name}, namespace: erp }
spec:
  template:
    metadata:
      labels: { sm-injector.io/inject: "true" }
      annotations:
${annotations}
    spec:
      containers: ${containers}
${extra}`;

async function example(text: string): Promise<string> {
  const r = await podFetchesOf(text, config);
  assert.deepEqual(r.errors, []);
  return envExample(r.pods, "app.yaml");
}

describe("dotenv: .env.example", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "sm-injector-dotenv-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function readBack(
    text: string,
  ): Promise<{ python: Map<string, string | null>; node: Record<string, string> }> {
    const file = join(dir, "example.env");
    await writeFile(file, text);
    return { python: await parseWithPythonDotenv(file), node: parseEnv(text) as Record<string, string> };
  }

  test("every variable of the pod, empty, with its reference as a comment", async () => {
    const text = await example(
      pod(
        "api",
        `        sm-injector.io/env.DATABASE_URL: erp/production/database#DATABASE_URL
        sm-injector.io/env.JWT_SECRET_KEY: "erp/staging/jwt/secret_key?versionStage=AWSPREVIOUS"
        sm-injector.io/env-from: "erp/production/redis?prefix=REDIS_"
        sm-injector.io/secrets: |
          - secret: erp/production/s3
            keys: [access_key_id, secret_access_key]
            rename: { access_key_id: AWS_S3_KEY }
            prefix: S3_`,
      ),
    );
    assert.match(text, /^# from erp\/production\/database#DATABASE_URL \(eu-west-1\)\nDATABASE_URL=$/m);
    assert.match(
      text,
      /^# from erp\/staging\/jwt\/secret_key\?versionStage=AWSPREVIOUS \(eu-west-1\)\nJWT_SECRET_KEY=$/m,
    );
    assert.match(
      text,
      /^# REDIS_<KEY> for every key of the JSON secret erp\/production\/redis \(eu-west-1\)/m,
    );
    const { python, node } = await readBack(text);
    assert.deepEqual(
      [...python.entries()],
      [
        ["DATABASE_URL", ""],
        ["JWT_SECRET_KEY", ""],
        ["AWS_S3_KEY", ""],
        ["S3_secret_access_key", ""],
      ],
    );
    assert.deepEqual({ ...node }, Object.fromEntries(python));
  });

  test("a JSON key that holds a newline, = or # stays inside its comment", async () => {
    const text = await example(
      pod(
        "api",
        `        sm-injector.io/secrets: |
          - secret: erp/production/odd
            key: "line\\nEVIL=1 # x"
            env: ODD
          - secret: erp/production/odd
            key: "ünïcode\\u2028sep"
            env: ODD2`,
      ),
    );
    const { python, node } = await readBack(text);
    assert.deepEqual([...python.keys()], ["ODD", "ODD2"]);
    assert.deepEqual(Object.keys(node), ["ODD", "ODD2"]);
    assert.match(text, /# from erp\/production\/odd#line\\u000aEVIL=1 # x \(eu-west-1\)/);
  });

  test("pods whose containers receive different variables get a section each; identical ones share one", async () => {
    const text = await example(
      [
        pod(
          "api",
          "        sm-injector.io/env.A: erp/a",
          "[{ name: app, image: app:1 }, { name: sidecar, image: s:1 }]",
        ),
        pod("worker", "        sm-injector.io/env.A: erp/a"),
        pod("export", "        sm-injector.io/env.B: erp/b"),
      ].join("---\n"),
    );
    const titles = text.split("\n").filter((l) => l.startsWith("# document"));
    assert.deepEqual(titles, [
      "# document 1 (Deployment api) in namespace erp, containers app, sidecar; document 2 (Deployment worker) in namespace erp, container app",
      "# document 3 (Deployment export) in namespace erp, container app",
    ]);
  });

  test("only targeted containers are named", async () => {
    const text = await example(
      pod(
        "api",
        `        sm-injector.io/env.A: erp/a
        sm-injector.io/containers: app`,
        "[{ name: app, image: app:1 }, { name: proxy, image: p:1 }]",
      ),
    );
    assert.match(text, /^# document 1 \(Deployment api\) in namespace erp, container app$/m);
  });

  test("pydantic-settings reads it as a settings file: every field present, empty", async () => {
    const text = await example(
      pod(
        "api",
        "        sm-injector.io/env.DATABASE_URL: erp/production/database#DATABASE_URL\n        sm-injector.io/env.JWT_SECRET_KEY: erp/jwt",
      ),
    );
    const file = join(dir, "pydantic.env");
    await writeFile(file, text);
    const script = `
import json, sys
from pydantic_settings import BaseSettings, SettingsConfigDict
class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=sys.argv[1])
    database_url: str
    jwt_secret_key: str
print(json.dumps(Settings().model_dump()))
`;
    const r = await run("python3", ["-c", script, file], {
      env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", PYTHONUTF8: "1" },
    });
    assert.equal(r.code, 0, r.stderr.toString());
    assert.deepEqual(JSON.parse(r.stdout.toString()), { database_url: "", jwt_secret_key: "" });
  });
});
