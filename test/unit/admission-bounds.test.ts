// What admission answers is bounded whatever a pod holds: reviewPod never throws (an exception is a
// denial carrying the request's uid), denial messages and warnings fit what the API server and
// kubectl carry and hold no control characters, and a pod whose SM_INJECTOR_SPEC Linux would refuse
// to exec is refused at admission. Uses only reviewPod, so it runs unchanged against older code.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { type AdmissionRequest, type ReviewDeps, reviewPod } from "../../src/admission/review.ts";
import { InjectorConfigSchema } from "../../src/contract/config.ts";
import { applyPatch } from "../helpers/json-patch.ts";

const config = InjectorConfigSchema.parse({ image: "img:1", defaultRegion: "eu-west-1" });
const deps: ReviewDeps = {
  config,
  lookupServiceAccount: async () => ({ roleArn: "arn:aws:iam::123456789012:role/app" }),
};

function request(annotations: Record<string, string>, uid = "uid-1"): AdmissionRequest {
  return {
    uid,
    kind: { group: "", version: "v1", kind: "Pod" },
    operation: "CREATE",
    namespace: "team-a",
    object: {
      metadata: { name: "p", labels: { "sm-injector.io/inject": "true" }, annotations },
      spec: { securityContext: { runAsUser: 1000 }, containers: [{ name: "app", image: "a:1" }] },
    },
  };
}

// C0, DEL, C1 and bidi controls, as a terminal would obey them (a message keeps its own newlines).
const isControl = (cp: number) =>
  cp < 0x20 ||
  (cp >= 0x7f && cp <= 0x9f) ||
  [0x200e, 0x200f, 0x2028, 0x2029].includes(cp) ||
  (cp >= 0x202a && cp <= 0x202e) ||
  (cp >= 0x2066 && cp <= 0x2069);
const controlIn = (s: string, allowNewline = false) =>
  [...s].find((ch) => isControl(ch.codePointAt(0) as number) && !(allowNewline && ch === "\n"));
const runes = (s: string) => [...s].length;

describe("reviewPod never throws", () => {
  const hostileMessage = `boom \u001b[2J\u001b[31m${"x".repeat(20_000)}\r\nforged log line`;

  for (const [name, broken] of [
    [
      "a namespace policy look-up that returns a malformed policy",
      { ...deps, lookupNamespacePolicy: async () => ({ patterns: null }) as never },
    ],
    [
      "a ServiceAccount whose identity throws when read",
      {
        ...deps,
        lookupServiceAccount: async () =>
          ({
            get roleArn(): string {
              throw new Error(hostileMessage);
            },
          }) as never,
      },
    ],
    [
      "a configuration that throws when read",
      {
        ...deps,
        config: new Proxy(config, {
          get(target, key) {
            if (key === "image") throw new TypeError(hostileMessage);
            return Reflect.get(target, key);
          },
        }),
      },
    ],
  ] as const) {
    test(`${name}: a denial with the request's uid, result "error", a bounded clean message`, async () => {
      const out = await reviewPod(request({ "sm-injector.io/env.A": "team-a/a" }, "uid-err"), broken);
      assert.equal(out.response.uid, "uid-err");
      assert.equal(out.response.allowed, false);
      assert.equal(out.result, "error");
      assert.equal(out.reason, "internal error");
      assert.equal(out.response.status?.code, 500);
      const message = out.response.status?.message ?? "";
      assert.match(message, /^sm-injector: internal error/);
      assert.ok(Buffer.byteLength(message) <= 1024, `message of ${Buffer.byteLength(message)} bytes`);
      assert.equal(controlIn(message), undefined);
    });
  }

  test("a pod object whose fields throw when read", async () => {
    const req = request({});
    req.object = new Proxy(
      {},
      {
        get() {
          throw new Error("no");
        },
        getPrototypeOf() {
          throw new Error("no");
        },
      },
    );
    const out = await reviewPod(req, deps);
    assert.equal(out.response.uid, "uid-1");
    assert.equal(out.response.allowed, false);
  });
});

describe("bounded denial messages", () => {
  test("thousands of problems: a few KiB, then 'and N more problems'", async () => {
    const annotations: Record<string, string> = {};
    // Under the annotation-count limit (512), so that each one is checked and reported.
    for (let i = 0; i < 500; i++) annotations[`sm-injector.io/env.${i}BAD`] = "team-a/a";
    const out = await reviewPod(request(annotations), deps);
    assert.equal(out.response.allowed, false);
    const message = out.response.status?.message ?? "";
    assert.ok(Buffer.byteLength(message) <= 4096, `message of ${Buffer.byteLength(message)} bytes`);
    assert.match(message, /\n {2}- and \d+ more problems$/);
  });

  test("one huge value quoted in a problem is cut", async () => {
    const out = await reviewPod(
      request({ "sm-injector.io/env.A": "team-a/a", "sm-injector.io/format": "x".repeat(200_000) }),
      deps,
    );
    const message = out.response.status?.message ?? "";
    assert.equal(out.response.allowed, false);
    assert.ok(Buffer.byteLength(message) <= 4096, `message of ${Buffer.byteLength(message)} bytes`);
  });

  test("control characters from the pod never reach the message (no terminal escapes, no forged lines)", async () => {
    const out = await reviewPod(
      request({
        "sm-injector.io/env.A": "team-a/a",
        "sm-injector.io/format": "\u001b]0;owned\u0007\u001b[2J\r  - forged line\u202e",
      }),
      deps,
    );
    const message = out.response.status?.message ?? "";
    assert.equal(out.response.allowed, false);
    assert.equal(controlIn(message, true), undefined, "only the message's own newlines");
    assert.equal(
      message.split("\n").length,
      2,
      "one problem line; the pod's \\r and newline-lookalikes are escaped",
    );
    assert.match(message, /\\u001b/, "escaped, so the user still sees what was there");
  });
});

describe("bounded warnings (kube-apiserver keeps 4096 runes in all, 256 each when over)", () => {
  test("many warnings: at most 12, each at most 256 runes, the last counting the rest", async () => {
    const annotations: Record<string, string> = {};
    for (let i = 0; i < 40; i++) annotations[`sm-injector.io/env.AWS_V${i}`] = "team-a/a";
    const out = await reviewPod(request(annotations), deps);
    assert.equal(out.response.allowed, true, out.response.status?.message);
    const warnings = out.response.warnings ?? [];
    assert.ok(warnings.length <= 12, `${warnings.length} warnings`);
    assert.match(warnings.at(-1) ?? "", /^and \d+ more warnings/);
    assert.ok(warnings.reduce((n, w) => n + runes(w), 0) <= 4096 - 1024, "room left for other webhooks");
  });

  test("a long warning is cut to 256 runes and holds no control character", async () => {
    // A container that sets a variable the annotations also set is warned about, by name; the API
    // server validates container names only after admission.
    const req = request({ "sm-injector.io/env.A": "team-a/a" });
    const name = `app${"\u001bé".repeat(300)}`;
    (req.object as { spec: { containers: object[] } }).spec.containers = [
      { name, image: "a:1", env: [{ name: "A", value: "1" }] },
    ];
    const out = await reviewPod(req, deps);
    assert.equal(out.response.allowed, true, out.response.status?.message);
    const warnings = out.response.warnings ?? [];
    assert.ok(warnings.some((w) => w.startsWith("container app")));
    for (const w of warnings) {
      assert.ok(runes(w) <= 256, `${runes(w)} runes`);
      assert.equal(controlIn(w), undefined);
    }
  });
});

describe("SM_INJECTOR_SPEC within Linux's per-variable limit (MAX_ARG_STRLEN, 128 KiB)", () => {
  const keyed = (count: number, keyLength: number) => {
    const annotations: Record<string, string> = {};
    for (let i = 0; i < count; i++)
      annotations[`sm-injector.io/env.V${i}`] = `team-a/db#${String(i).padEnd(keyLength, "k")}`;
    return annotations;
  };
  const specBytes = (out: Awaited<ReturnType<typeof reviewPod>>, pod: AdmissionRequest["object"]) => {
    const after = applyPatch(pod, JSON.parse(Buffer.from(out.response.patch ?? "", "base64").toString()));
    const init = (
      after as {
        spec?: { initContainers?: Array<{ name: string; env?: Array<{ name: string; value?: string }> }> };
      }
    )?.spec?.initContainers?.find((c: { name: string }) => c.name === "sm-injector-fetch");
    return Buffer.byteLength(
      init?.env?.find((e: { name: string }) => e.name === "SM_INJECTOR_SPEC")?.value ?? "",
    );
  };

  // Within every annotation limit (500 entries, 1 KiB keys, 128 KiB of annotations): the spec repeats
  // each entry's secret, region and flags, so it outgrows the annotations.
  test("500 references with 200-byte JSON keys (a ~147 KB spec) are refused, saying what to do", async () => {
    const out = await reviewPod(request(keyed(500, 200)), deps);
    assert.equal(out.response.allowed, false);
    assert.equal(out.response.status?.code, 400);
    const message = out.response.status?.message ?? "";
    assert.match(message, /^sm-injector: .*SM_INJECTOR_SPEC.*over the limit of \d+ bytes/);
    assert.match(message, /fewer secrets or JSON keys/);
    assert.match(message, /env-from/);
    assert.match(message, /shorten the JSON keys/);

    // The limit is the kernel's: 400 such references (a ~118 KB spec) still start.
    const req = request(keyed(400, 200));
    const under = await reviewPod(req, deps);
    assert.equal(under.response.allowed, true, under.response.status?.message);
    const bytes = specBytes(under, req.object);
    assert.ok(bytes > 100_000 && bytes + "SM_INJECTOR_SPEC=".length + 1 <= 131072, `${bytes} bytes`);
  });

  test("one 200 KB #key is refused at admission, not by the kernel at pod start", async () => {
    const out = await reviewPod(
      request({ "sm-injector.io/env.A": `team-a/db#${"k".repeat(200_000)}` }),
      deps,
    );
    assert.equal(out.response.allowed, false);
    assert.match(out.response.status?.message ?? "", /^sm-injector: /);
    assert.ok(Buffer.byteLength(out.response.status?.message ?? "") <= 4096);
  });
});
