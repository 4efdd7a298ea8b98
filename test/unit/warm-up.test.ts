// The webhook compiles a few pods before it reports ready (src/admission/warm-up.ts): they must take
// the path real pods take — the YAML parser, the schemas, every reference form — to the end, not stop
// at an early refusal, or the first tenant's pod pays for compiling that code.
import assert from "node:assert/strict";
import { test } from "node:test";
import { warmUpDecision, warmUpPod } from "../../src/admission/warm-up.ts";
import { MAX_YAML_BYTES } from "../../src/contract/annotations.ts";
import { compileInjectionSpec } from "../../src/contract/compile.ts";
import { InjectorConfigSchema } from "../../src/contract/config.ts";
import { parseSimpleYamlList } from "../../src/contract/structured.ts";

const config = InjectorConfigSchema.parse({ image: "registry.example.com/sm-injector:test" });

test("the warm-up pod compiles to a spec with every form of reference", () => {
  const pod = warmUpPod(0);
  const result = compileInjectionSpec(pod, config);
  assert.ok(result.ok, result.ok ? "" : result.errors.join("\n"));
  assert.equal(result.spec.entries.length, 42);
  assert.ok(result.spec.entries.some((e) => e.kind === "expand" && e.keys !== undefined));
  assert.ok(result.spec.entries.some((e) => "source" in e && e.source.versionStage === "AWSPREVIOUS"));
});

test("its structured annotation goes through the YAML parser, not the plain-form fast path", () => {
  const text = warmUpPod(0).metadata?.annotations?.["sm-injector.io/secrets"] ?? "";
  assert.equal(parseSimpleYamlList(text), undefined);
  assert.ok(Buffer.byteLength(text) <= MAX_YAML_BYTES, "within the structured form's own limit");
});

test("warmUpDecision runs and reports its time", () => {
  assert.ok(warmUpDecision(config, 1) > 0);
});
