// One rule for an absolute directory: the output-dir annotation, the webhook's default and allowed
// roots, and the spec the init container reads all accept and refuse the same paths.
import assert from "node:assert/strict";
import { test } from "node:test";
import { compileInjectionSpec } from "../../src/contract/compile.ts";
import { InjectorConfigSchema } from "../../src/contract/config.ts";
import { FetchSpecSchema } from "../../src/contract/fetch-spec.ts";
import { absoluteDirProblem, outputPath } from "../../src/contract/paths.ts";

const config = InjectorConfigSchema.parse({ image: "img:1", defaultRegion: "eu-west-1" });
const DIRS = [
  "/run/app",
  "/run/a.b/c_d-e",
  "/run/.hidden",
  "/run/app/",
  "/run//app",
  "/run/./app",
  "/run/../etc",
  "/run/a b",
  "/run/é",
  "run/app",
  "/",
  "",
];

test("every boundary agrees with absoluteDirProblem", () => {
  for (const dir of DIRS) {
    const ok = absoluteDirProblem(dir) === undefined;
    const asDefault = InjectorConfigSchema.safeParse({ image: "i", defaultOutputDir: dir }).success;
    const asRoot = InjectorConfigSchema.safeParse({ image: "i", allowedOutputRoots: [dir] }).success;
    const inSpec = FetchSpecSchema.safeParse({
      version: 1,
      format: "shell",
      outputDir: dir,
      fileName: "env",
      fileMode: 0o400,
      timeoutSeconds: 60,
      entries: [{ kind: "value", source: { secretId: "a" }, env: "A" }],
    }).success;
    const compiled = compileInjectionSpec(
      {
        metadata: { annotations: { "sm-injector.io/env.A": "team-a/a", "sm-injector.io/output-dir": dir } },
        spec: { containers: [{ name: "app", image: "a:1" }] },
      },
      config,
    );
    const shapeRefused =
      !compiled.ok && compiled.errors.some((e) => /must (be an absolute|not contain)/.test(e));
    assert.deepEqual(
      { asDefault, asRoot, inSpec, annotation: !shapeRefused },
      { asDefault: ok, asRoot: ok, inSpec: ok, annotation: ok },
      JSON.stringify(dir),
    );
  }
});

test("the app reads dir/file, or the directory itself for files", () => {
  assert.equal(outputPath({ format: "shell", outputDir: "/run/x", fileName: "env" }), "/run/x/env");
  assert.equal(outputPath({ format: "json", outputDir: "/run/x", fileName: "env.json" }), "/run/x/env.json");
  assert.equal(outputPath({ format: "files", outputDir: "/run/x", fileName: "env" }), "/run/x");
});
