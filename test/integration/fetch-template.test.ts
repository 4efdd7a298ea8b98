// biome-ignore-all lint/suspicious/noTemplateCurlyInString: ${…} is the template syntax under test
// Templates in the init container, against moto through the real AWS SDK: the spec the webhook
// compiles from a pod's annotations (`inject`, the same decision), each secret fetched once however
// many placeholders and entries read it, the JSON number as its text, values exact after `. env` in
// dash and bash and in every other format, and failures that name the variable and the reference,
// never a value.
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { V1Pod } from "@kubernetes/client-node";
import { parse as parseYaml } from "yaml";
import { InjectorConfigSchema } from "../../src/contract/config.ts";
import { decodeVersions } from "../../src/contract/fetched-versions.ts";
import { injectManifests } from "../../src/inject/manifests.ts";
import { initContainerEnv, type Moto, runFetchInProcess, startMoto } from "../helpers/moto.ts";
import { parseWithPythonDotenv, sourceWithShell } from "../helpers/roundtrip.ts";

const RDS = "erp/production/rds";
const JWT = "erp/staging/jwt/secret_key";
// What breaks naive composition: every URL delimiter, quotes, a backtick, a space, `$`, a newline
// and non-ASCII. The RDS rotation function never writes a newline; a template still carries one.
const PASSWORD = `p@ss:w/rd?#%$'"\\\` x$(id)é\n`;
const RDS_SECRET = {
  engine: "postgres",
  host: "erp-db.cluster-abc.eu-west-1.rds.amazonaws.com",
  port: 5432,
  username: "erp_app",
  password: PASSWORD,
  dbname: "erp main",
};
const URL_TEMPLATE = `postgresql://\${${RDS}#username|urlencode}:\${${RDS}#password|urlencode}@\${${RDS}#host}:\${${RDS}#port}/\${${RDS}#dbname|urlencode}?sslmode=require`;
const enc = (s: string) =>
  Buffer.from(s, "utf8").reduce(
    (out, b) =>
      out +
      (/[A-Za-z0-9._~-]/.test(String.fromCharCode(b))
        ? String.fromCharCode(b)
        : `%${b.toString(16).toUpperCase().padStart(2, "0")}`),
    "",
  );
const EXPECTED = {
  DATABASE_URL: `postgresql://erp_app:${enc(PASSWORD)}@${RDS_SECRET.host}:5432/erp%20main?sslmode=require`,
  PG_DSN: `host=${RDS_SECRET.host} port=5432 password='p@ss:w/rd?#%$\\'"\\\\\` x$(id)é\n' cost=$5`,
  CONFIG_JSON: `{"password":${JSON.stringify(PASSWORD)},"port":5432}`,
  DB_HOST: RDS_SECRET.host,
  JWT_SECRET_KEY: "jwt 'secret' $HOME",
};

let moto: Moto;
let scratch: string;
let runs = 0;

/** The init container's SM_INJECTOR_SPEC as the webhook writes it for a pod with these annotations. */
async function compiledSpec(
  annotations: Record<string, string>,
  format = "shell",
): Promise<Record<string, unknown>> {
  const pod = {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name: "api",
      namespace: "erp",
      labels: { "sm-injector.io/inject": "true" },
      annotations: { "sm-injector.io/format": format, ...annotations },
    },
    spec: { securityContext: { runAsUser: 1000 }, containers: [{ name: "api", image: "api:1" }] },
  };
  const r = await injectManifests(
    JSON.stringify(pod),
    InjectorConfigSchema.parse({ image: "img:1", defaultRegion: "us-east-1" }),
  );
  assert.ok(r.ok, r.errors.join("\n"));
  const injected = parseYaml(r.output) as V1Pod;
  const init = injected.spec?.initContainers?.find((c) => c.name === "sm-injector-fetch");
  const raw = init?.env?.find((e) => e.name === "SM_INJECTOR_SPEC")?.value;
  assert.ok(raw, "the injected init container carries the spec");
  return JSON.parse(raw);
}

/** Runs the init container's code with the compiled spec, writing into a fresh directory. */
async function fetchWith(spec: Record<string, unknown>) {
  const { env, outputDir, terminationLog } = await initContainerEnv(
    moto.endpoint,
    join(scratch, `run-${runs++}`),
    spec,
  );
  const run = await runFetchInProcess(env);
  return { run, outputDir, file: join(outputDir, spec.fileName as string), terminationLog };
}

const ANNOTATIONS = {
  "sm-injector.io/template.DATABASE_URL": URL_TEMPLATE,
  "sm-injector.io/template.PG_DSN": `host=\${${RDS}#host} port=\${${RDS}#port} password=\${${RDS}#password|libpq} cost=$$5`,
  "sm-injector.io/template.CONFIG_JSON": `{"password":\${${RDS}#password|json},"port":\${${RDS}#port|json}}`,
  "sm-injector.io/env.DB_HOST": `${RDS}#host`,
  "sm-injector.io/env.JWT_SECRET_KEY": JWT,
};

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), "sm-injector-fetch-template-"));
  moto = await startMoto();
  await moto.createSecret(RDS, JSON.stringify(RDS_SECRET));
  await moto.createSecret(JWT, EXPECTED.JWT_SECRET_KEY);
});

after(async () => {
  await moto?.stop();
  await rm(scratch, { recursive: true, force: true });
});

describe("templates resolved in the init container", () => {
  test("shell: every composed value exact after `. env` in dash and bash; the RDS secret read once", async () => {
    const { run, file, terminationLog } = await fetchWith(await compiledSpec(ANNOTATIONS));
    assert.equal(run.code, 0, run.stderr);
    for (const shell of ["dash", "bash"] as const) {
      const got = await sourceWithShell(shell, file, Object.keys(EXPECTED));
      assert.deepEqual(
        Object.fromEntries([...got].map(([k, v]) => [k, v.toString("utf8")])),
        EXPECTED,
        shell,
      );
    }
    const written = run.logs.find((l) => l.msg === "secrets written");
    assert.equal(written?.secrets, 2, "two distinct secrets");
    assert.equal(written?.apiCalls, 2, "one GetSecretValue each, however many placeholders read it");
    assert.equal(run.logs.filter((l) => l.msg === "fetched secret" && l.secretId === RDS).length, 1);
    // The rotation controller reads which version the template's secret was.
    const versions = decodeVersions(await readFile(terminationLog, "utf8"));
    assert.deepEqual(versions?.records?.map((r) => r.secretId).sort(), [JWT, RDS].sort());
    assert.ok(!run.stdout.includes("p@ss") && !run.stdout.includes(enc(PASSWORD)), "no value in the log");
  });

  test("dotenv and json: the same values through python-dotenv and JSON.parse; what dotenv cannot carry is refused", async () => {
    // The libpq DSN and the JSON hold both quotes (and a newline, a #), which no dotenv quoting
    // carries for both python-dotenv and Node: the encoder refuses them (naming the template), as
    // for any other value. A percent-encoded URL always fits.
    const refused = await fetchWith(await compiledSpec(ANNOTATIONS, "dotenv"));
    assert.equal(refused.run.code, 1);
    assert.match(
      refused.run.stderr,
      /^sm-injector fetch: template PG_DSN: cannot be written in the dotenv format: /,
    );
    const {
      "sm-injector.io/template.PG_DSN": _,
      "sm-injector.io/template.CONFIG_JSON": __,
      ...rest
    } = ANNOTATIONS;
    const { PG_DSN: ___, CONFIG_JSON: ____, ...expected } = EXPECTED;
    const dotenv = await fetchWith(await compiledSpec(rest, "dotenv"));
    assert.equal(dotenv.run.code, 0, dotenv.run.stderr);
    assert.deepEqual(Object.fromEntries(await parseWithPythonDotenv(dotenv.file)), expected);
    const json = await fetchWith(await compiledSpec(ANNOTATIONS, "json"));
    assert.equal(json.run.code, 0, json.run.stderr);
    assert.deepEqual(JSON.parse(await readFile(json.file, "utf8")), EXPECTED);
  });

  test("a missing key or secret fails closed, naming the variable and the reference, never a value", async () => {
    const { run, outputDir } = await fetchWith(
      await compiledSpec({
        "sm-injector.io/template.DATABASE_URL": `postgresql://\${${RDS}#user|urlencode}:\${${RDS}#password|urlencode}@\${${RDS}#host}/\${erp/production/missing#dbname}`,
      }),
    );
    assert.equal(run.code, 1);
    const lines = run.stderr.trim().split("\n");
    assert.equal(lines.length, 2, run.stderr);
    assert.match(
      lines[0] ?? "",
      /^sm-injector fetch: template DATABASE_URL: erp\/production\/rds: has no key "user" \(it has 6 keys: "engine", "host", "port", "username", "password", "dbname"\) \[key-missing\]$/,
    );
    assert.match(
      lines[1] ?? "",
      /^sm-injector fetch: template DATABASE_URL: erp\/production\/missing: ResourceNotFoundException/,
    );
    for (const text of [run.stderr, run.stdout]) {
      assert.ok(
        !text.includes("p@ss") && !text.includes(enc(PASSWORD)) && !text.includes(RDS_SECRET.host),
        "no value",
      );
    }
    assert.deepEqual(
      await import("node:fs/promises").then((fs) => fs.readdir(outputDir)),
      [],
      "nothing written",
    );
  });
});
