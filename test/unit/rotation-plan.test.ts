// The rotation controller's decisions, as pure functions of pods and current versions.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { V1Pod } from "@kubernetes/client-node";
import {
  changesFor,
  decideRestarts,
  type PodView,
  podView,
  RESTARTED_AT_ANNOTATION,
  RESTARTED_FOR_ANNOTATION,
  restartMarker,
  type Workload,
} from "../../src/rotation/plan.ts";
import { encodeVersions, type VersionRecord, versionKey } from "../../src/spec/fetched-versions.ts";

const DB = { secretId: "erp/production/database", region: "eu-west-1", stage: "AWSCURRENT" };
const JWT = { secretId: "erp/staging/jwt/secret_key", region: "eu-west-1", stage: "AWSCURRENT" };

function pod(opts: {
  records?: VersionRecord[];
  annotations?: Record<string, string>;
  message?: string;
  exit?: number;
}): V1Pod {
  const spec = {
    version: 1,
    format: "shell",
    outputDir: "/run/sm-injector",
    fileName: "env",
    fileMode: 256,
    timeoutSeconds: 60,
    entries: [
      { kind: "value", source: { secretId: DB.secretId }, env: "DATABASE_URL", key: "DATABASE_URL" },
      { kind: "value", source: { secretId: JWT.secretId, region: "eu-west-1" }, env: "JWT_SECRET_KEY" },
      { kind: "value", source: { secretId: JWT.secretId, versionId: "pinned" }, env: "JWT_PINNED" },
    ],
  };
  return {
    metadata: {
      name: "erp-api-5d8f7c-abcde",
      namespace: "erp",
      annotations: {
        "sm-injector.io/status": "injected",
        "sm-injector.io/restart-on-rotation": "true",
        ...opts.annotations,
      },
      ownerReferences: [
        { apiVersion: "apps/v1", kind: "ReplicaSet", name: "erp-api-5d8f7c", uid: "u", controller: true },
      ],
    },
    spec: {
      containers: [{ name: "api" }],
      initContainers: [
        {
          name: "sm-injector-fetch",
          env: [
            { name: "SM_INJECTOR_SPEC", value: JSON.stringify(spec) },
            { name: "AWS_REGION", value: "eu-west-1" },
          ],
        },
      ],
    },
    status: {
      initContainerStatuses: [
        {
          name: "sm-injector-fetch",
          image: "x",
          imageID: "",
          ready: false,
          restartCount: 0,
          state: {
            terminated: {
              exitCode: opts.exit ?? 0,
              message: opts.message ?? encodeVersions(opts.records ?? []),
            },
          },
        },
      ],
    },
  };
}

const had = [
  { ...DB, versionId: "db-1" },
  { ...JWT, versionId: "jwt-1" },
];
const current = (db: string | null, jwt: string | null) =>
  new Map([
    [versionKey(DB), db],
    [versionKey(JWT), jwt],
  ]);

describe("podView", () => {
  test("the watched references: stages only (a pinned version id never moves), region resolved", () => {
    const v = podView(pod({ records: had })) as PodView;
    assert.deepEqual(v.refs, [
      { ...DB, optional: false },
      { ...JWT, optional: false },
    ]);
    assert.deepEqual(v.owner, {
      apiVersion: "apps/v1",
      kind: "ReplicaSet",
      name: "erp-api-5d8f7c",
      uid: "u",
    });
  });

  test("left alone, with the reason", () => {
    const why = (p: V1Pod) => (podView(p) as { skip?: string }).skip;
    assert.equal(
      why(pod({ records: had, annotations: { "sm-injector.io/restart-on-rotation": "false" } })),
      "not opted in",
    );
    assert.equal(why(pod({ records: had, annotations: { "sm-injector.io/status": "" } })), "not injected");
    assert.equal(why(pod({ records: had, exit: 1 })), "init container has not completed");
    assert.equal(
      why(pod({ message: "sm-injector fetch: AccessDenied" })),
      "no versions recorded (termination message)",
    );
  });
});

describe("changesFor", () => {
  const v = podView(pod({ records: had })) as PodView;
  test("a moved stage is a change, from → to", () => {
    assert.deepEqual(changesFor(v, current("db-1", "jwt-2")), [{ ...JWT, from: "jwt-1", to: "jwt-2" }]);
    assert.deepEqual(
      changesFor(v, current("db-1", null)),
      [],
      "a stage on no version: nothing to restart into",
    );
  });
  test("unchanged, unknown (DescribeSecret failed) or a stage on no version: no change", () => {
    assert.deepEqual(changesFor(v, current("db-1", "jwt-1")), []);
    assert.deepEqual(changesFor(v, new Map([[versionKey(DB), "db-1"]])), []);
    assert.deepEqual(changesFor(v, current("db-1", null)), []);
  });
  test("digest only (too many records to keep): compared as a whole", () => {
    const digestOnly = { ...v, fetched: { digest: v.fetched.digest } };
    assert.deepEqual(changesFor(digestOnly, current("db-1", "jwt-1")), []);
    assert.equal(
      changesFor(digestOnly, current("db-2", "jwt-1")).length,
      2,
      "which one is not known: both named",
    );
    assert.deepEqual(changesFor(digestOnly, new Map([[versionKey(DB), "db-2"]])), [], "unknown: no change");
    assert.deepEqual(changesFor(digestOnly, current("db-2", null)), [], "a required secret gone: no restart");
    // An optional reference with no secret behind it was not recorded: left out of the comparison.
    const withOptional = {
      ...digestOnly,
      refs: [
        ...digestOnly.refs,
        { secretId: "erp/optional", region: "eu-west-1", stage: "AWSCURRENT", optional: true },
      ],
    };
    const opt = new Map([
      ...current("db-1", "jwt-1"),
      [versionKey({ secretId: "erp/optional", region: "eu-west-1", stage: "AWSCURRENT" }), null],
    ]);
    assert.deepEqual(changesFor(withOptional, opt), []);
    opt.set(versionKey(DB), "db-2");
    assert.equal(changesFor(withOptional, opt).length, 2);
  });
});

describe("decideRestarts", () => {
  const w: Workload = { kind: "Deployment", namespace: "erp", name: "erp-api", uid: "d-uid" };
  const v = podView(pod({ records: had })) as PodView;
  const changes = changesFor(v, current("db-1", "jwt-2"));
  const stale = [
    { pod: v, workload: w, changes },
    { pod: { ...v, name: "erp-api-5d8f7c-fghij" }, workload: w, changes },
  ];
  const now = Date.parse("2026-11-29T12:00:00Z");

  test("one restart per workload, for all its stale pods", () => {
    const d = decideRestarts(stale, () => ({}), { now, minIntervalMs: 600_000 });
    assert.equal(d.restart.length, 1);
    assert.deepEqual(d.restart[0]?.pods, ["erp-api-5d8f7c-abcde", "erp-api-5d8f7c-fghij"]);
    assert.equal(d.restart[0]?.marker, restartMarker(changes));
  });

  test("held: already restarted for these versions, or too recently", () => {
    const same = decideRestarts(stale, () => ({ [RESTARTED_FOR_ANNOTATION]: restartMarker(changes) }), {
      now,
      minIntervalMs: 0,
    });
    assert.equal(same.restart.length, 0);
    assert.match(same.held[0]?.why ?? "", /already restarted/);
    const recent = decideRestarts(
      stale,
      () => ({
        [RESTARTED_AT_ANNOTATION]: new Date(now - 60_000).toISOString(),
        [RESTARTED_FOR_ANNOTATION]: "older",
      }),
      { now, minIntervalMs: 600_000 },
    );
    assert.equal(recent.restart.length, 0);
    assert.match(recent.held[0]?.why ?? "", /restarted 60 s ago \(minimum interval 600 s\)/);
    const later = decideRestarts(
      stale,
      () => ({
        [RESTARTED_AT_ANNOTATION]: new Date(now - 700_000).toISOString(),
        [RESTARTED_FOR_ANNOTATION]: "older",
      }),
      { now, minIntervalMs: 600_000 },
    );
    assert.equal(later.restart.length, 1, "a newer rotation after the interval");
  });
});
