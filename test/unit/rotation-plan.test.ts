// The rotation controller's decisions, as pure functions of pods and current versions.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { V1Pod } from "@kubernetes/client-node";
import { encodeVersions, type VersionRecord, versionKey } from "../../src/contract/fetched-versions.ts";
import {
  changesFor,
  claimsOutsideTemplate,
  controllerRevisionTemplate,
  decideRestarts,
  POD_LIMITS,
  type PodView,
  podView,
  RESTARTED_AT_ANNOTATION,
  RESTARTED_FOR_ANNOTATION,
  type RestartCandidate,
  type RevisionFacts,
  restartCandidate,
  restartMarker,
  revisionName,
  selectorMatches,
  templateFingerprint,
  templateOptIn,
  templateRefs,
  verifyMembership,
  type WatchedRef,
  type Workload,
  type WorkloadFacts,
  workloadFacts,
} from "../../src/rotation/plan.ts";
import { fetchFinished } from "../helpers/pod-status.ts";

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
        fetchFinished(opts.message ?? encodeVersions(opts.records ?? []), opts.exit ?? 0),
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

describe("podView: bounded before parsing, the pod's annotations only a filter", () => {
  const why = (p: V1Pod) => (podView(p) as { skip?: string }).skip;
  test("a bare pod (no controller) is not watched: no rollout can restart it", () => {
    const p = pod({ records: had });
    (p.metadata as { ownerReferences?: unknown }).ownerReferences = undefined;
    assert.match(why(p) ?? "", /no controller/);
    const job = pod({ records: had });
    (job.metadata as { ownerReferences: unknown }).ownerReferences = [
      { apiVersion: "batch/v1", kind: "Job", name: "migrate", uid: "j", controller: true },
    ];
    assert.equal(why(job), "owned by Job/migrate (batch/v1), which no rollout restarts");
  });
  test("an SM_INJECTOR_SPEC over Linux's per-variable limit, a termination message over the kubelet's, huge labels: skipped", () => {
    const bigSpec = pod({ records: had });
    const env = bigSpec.spec?.initContainers?.[0]?.env?.[0] as { value: string };
    env.value = `${env.value}${" ".repeat(POD_LIMITS.specBytes)}`;
    assert.match(why(bigSpec) ?? "", /SM_INJECTOR_SPEC over/);
    assert.match(
      why(pod({ message: `{${" ".repeat(POD_LIMITS.messageBytes)}}` })) ?? "",
      /termination message over/,
    );
    const bigLabels = pod({ records: had });
    (bigLabels.metadata as { labels: Record<string, string> }).labels = {
      a: "x".repeat(POD_LIMITS.labelBytes),
    };
    assert.match(why(bigLabels) ?? "", /labels over/);
  });
  test("the view keeps labels and the controller reference (claims, checked later)", () => {
    const p = pod({ records: had });
    (p.metadata as { labels: Record<string, string> }).labels = {
      app: "erp-api",
      "pod-template-hash": "5d8f7c",
    };
    const v = podView(p) as PodView;
    assert.deepEqual(v.labels, { app: "erp-api", "pod-template-hash": "5d8f7c" });
  });
});

// The workload side: templates, revisions and what they vouch for.
const template = (over: { labels?: Record<string, string>; annotations?: Record<string, string> } = {}) => ({
  metadata: {
    labels: { app: "erp-api", "sm-injector.io/inject": "true", ...over.labels },
    annotations: {
      "sm-injector.io/env.DATABASE_URL": `${DB.secretId}#DATABASE_URL`,
      "sm-injector.io/env.JWT_SECRET_KEY": JWT.secretId,
      "sm-injector.io/env.JWT_PINNED": `${JWT.secretId}?versionId=a1b2c3d4-0000-4000-8000-000000000001`,
      "sm-injector.io/restart-on-rotation": "true",
      "sm-injector.io/format": "dotenv",
      ...over.annotations,
    },
  },
  spec: {
    containers: [{ name: "api", image: "erp/api:2", env: [{ name: "AWS_REGION", value: "eu-west-1" }] }],
  },
});
const selector = { matchLabels: { app: "erp-api" } };
const DEPLOYMENT: Workload = { kind: "Deployment", namespace: "erp", name: "erp-api", uid: "d-uid" };
const facts = (t = template(), w: Workload = DEPLOYMENT): WorkloadFacts =>
  workloadFacts(w, selector, t, "eu-west-1");
const rsFacts = (over: Partial<RevisionFacts> = {}): RevisionFacts => ({
  kind: "ReplicaSet",
  name: "erp-api-5d8f7c",
  uid: "u",
  controller: { apiVersion: "apps/v1", kind: "Deployment", name: "erp-api", uid: "d-uid" },
  hash: "5d8f7c",
  fingerprint: templateFingerprint({
    ...template(),
    metadata: {
      ...template().metadata,
      labels: { ...template().metadata.labels, "pod-template-hash": "5d8f7c" },
    },
  }),
  ...over,
});
const member = (labels: Record<string, string> = { app: "erp-api", "pod-template-hash": "5d8f7c" }) => {
  const p = pod({ records: had });
  (p.metadata as { labels: Record<string, string> }).labels = labels;
  return podView(p) as PodView;
};

describe("templateOptIn: the workload's own template, never the pod", () => {
  test("needs the inject label and restart-on-rotation: true on the template", () => {
    assert.equal(templateOptIn(template()), undefined);
    assert.match(
      templateOptIn(template({ labels: { "sm-injector.io/inject": "false" } })) ?? "",
      /no label sm-injector.io\/inject/,
    );
    assert.match(
      templateOptIn(template({ annotations: { "sm-injector.io/restart-on-rotation": "false" } })) ?? "",
      /no annotation sm-injector.io\/restart-on-rotation/,
    );
    assert.match(templateOptIn(undefined) ?? "", /no label/);
  });
});

describe("selectorMatches", () => {
  test("matchLabels and every operator; an empty selector matches nothing", () => {
    const labels = { app: "erp-api", tier: "web" };
    assert.ok(selectorMatches({ matchLabels: { app: "erp-api" } }, labels));
    assert.equal(selectorMatches({ matchLabels: { app: "other" } }, labels), false);
    assert.ok(
      selectorMatches({ matchExpressions: [{ key: "tier", operator: "In", values: ["web"] }] }, labels),
    );
    assert.equal(
      selectorMatches({ matchExpressions: [{ key: "tier", operator: "NotIn", values: ["web"] }] }, labels),
      false,
    );
    assert.ok(selectorMatches({ matchExpressions: [{ key: "tier", operator: "Exists" }] }, labels));
    assert.ok(selectorMatches({ matchExpressions: [{ key: "x", operator: "DoesNotExist" }] }, labels));
    assert.equal(selectorMatches({ matchExpressions: [{ key: "tier", operator: "Bogus" }] }, labels), false);
    assert.equal(selectorMatches({}, labels), false);
    assert.equal(selectorMatches(undefined, labels), false);
    assert.equal(selectorMatches({ matchLabels: { toString: "x" } }, labels), false, "no prototype keys");
  });
});

describe("templateFingerprint", () => {
  test("ignores the controller's hash labels; `base` also ignores this controller's stamps", () => {
    const t = template();
    const withHash = {
      ...t,
      metadata: { ...t.metadata, labels: { ...t.metadata.labels, "pod-template-hash": "h" } },
    };
    assert.equal(templateFingerprint(withHash).exact, templateFingerprint(t).exact);
    const stamped = template({ annotations: { [RESTARTED_AT_ANNOTATION]: "2026-01-01T00:00:00Z" } });
    assert.notEqual(templateFingerprint(stamped).exact, templateFingerprint(t).exact);
    assert.equal(templateFingerprint(stamped).base, templateFingerprint(t).base);
    const image = { ...t, spec: { containers: [{ name: "api", image: "erp/api:3" }] } };
    assert.notEqual(templateFingerprint(image).base, templateFingerprint(t).base);
  });
  test("a ControllerRevision's raw JSON equals the typed template (key order, nulls, $patch, dates)", () => {
    const typed = {
      metadata: { labels: { b: "1", a: "2" }, creationTimestamp: undefined },
      spec: { containers: [{ name: "c", image: "i" }] },
    };
    const raw = {
      spec: {
        template: {
          $patch: "replace",
          spec: { containers: [{ image: "i", name: "c" }] },
          metadata: { creationTimestamp: null, labels: { a: "2", b: "1" } },
        },
      },
    };
    assert.equal(
      templateFingerprint(controllerRevisionTemplate(raw)).exact,
      templateFingerprint(typed as never).exact,
    );
    assert.equal(controllerRevisionTemplate({ spec: { template: [] } }), undefined);
    assert.equal(controllerRevisionTemplate("nonsense"), undefined);
  });
});

describe("templateRefs: what the template's annotations reference, compiled like the webhook", () => {
  test("stages only (pinned ids never move), regions resolved; output annotations do not matter", () => {
    assert.deepEqual(
      templateRefs(template({ annotations: { "sm-injector.io/output-dir": "/somewhere/else" } }), undefined),
      [
        { ...DB, optional: false },
        { ...JWT, optional: false },
      ],
    );
  });
  test("a reference needing the default region: the controller's own; none: an error naming the fix", () => {
    const t = template();
    t.spec.containers[0] = { name: "api", image: "x", env: [] };
    assert.equal((templateRefs(t, "eu-west-1") as WatchedRef[])[0]?.region, "eu-west-1");
    assert.match((templateRefs(t, undefined) as { error: string }).error, /do not compile: .*no AWS region/);
  });
});

describe("verifyMembership: a pod's claims against objects it cannot write", () => {
  test("a pod of the Deployment's current template, or of the template before its last restart", () => {
    assert.deepEqual(verifyMembership(member(), facts(), rsFacts()), { ok: true, revision: "current" });
    const stamped = facts(template({ annotations: { [RESTARTED_FOR_ANNOTATION]: "m" } }));
    assert.deepEqual(verifyMembership(member(), stamped, rsFacts()), { ok: true, revision: "previous" });
  });
  const refused = (why: RegExp, p: PodView, w: WorkloadFacts, r: RevisionFacts) => {
    const m = verifyMembership(p, w, r);
    assert.equal(m.ok, false);
    assert.match((m as { why: string }).why, why);
  };
  test("an owner reference to another ReplicaSet (uid) or a forged pod-template-hash", () => {
    refused(/does not name ReplicaSet/, member(), facts(), rsFacts({ uid: "other" }));
    refused(
      /pod-template-hash label is not its ReplicaSet's/,
      member({ app: "erp-api", "pod-template-hash": "zzz" }),
      facts(),
      rsFacts(),
    );
    refused(/pod-template-hash label/, member(), facts(), rsFacts({ hash: undefined }));
  });
  test("a ReplicaSet the Deployment does not control (another uid, another kind)", () => {
    refused(
      /not controlled by Deployment erp-api/,
      member(),
      facts(),
      rsFacts({ controller: { apiVersion: "apps/v1", kind: "Deployment", name: "erp-api", uid: "old" } }),
    );
    refused(/not controlled by/, member(), facts(), rsFacts({ controller: undefined }));
  });
  test("labels outside the Deployment's selector", () => {
    refused(/do not match/, member({ "pod-template-hash": "5d8f7c" }), facts(), rsFacts());
  });
  test("a ReplicaSet of an older template (another image): not the current one nor the one before a restart", () => {
    const newer = facts({
      ...template(),
      spec: { containers: [{ name: "api", image: "erp/api:3", env: [] }] },
    });
    refused(/neither .* current template nor the one before its last restart/, member(), newer, rsFacts());
    refused(/holds no pod template/, member(), facts(), rsFacts({ fingerprint: undefined }));
  });
  test("StatefulSet and DaemonSet: the controller-revision-hash names a ControllerRevision the workload controls", () => {
    for (const kind of ["StatefulSet", "DaemonSet"] as const) {
      const w = facts(template(), { kind, namespace: "erp", name: "erp-api", uid: "s-uid" });
      const hash = kind === "StatefulSet" ? "erp-api-7f9" : "7f9";
      const p = {
        ...member({ app: "erp-api", "controller-revision-hash": hash }),
        owner: { apiVersion: "apps/v1", kind, name: "erp-api", uid: "s-uid" },
      };
      const name = revisionName(p, kind) as string;
      assert.equal(name, "erp-api-7f9");
      const rev: RevisionFacts = {
        kind: "ControllerRevision",
        name,
        uid: "cr",
        controller: { apiVersion: "apps/v1", kind, name: "erp-api", uid: "s-uid" },
        hash: "7f9",
        fingerprint: templateFingerprint(template()),
      };
      assert.deepEqual(verifyMembership(p, w, rev), { ok: true, revision: "current" });
      refused(/does not name ControllerRevision/, p, w, { ...rev, name: "erp-api-other" });
      refused(/owner reference does not name/, { ...p, owner: { ...p.owner, uid: "x" } }, w, rev);
      refused(/not controlled by/, p, w, {
        ...rev,
        controller: { apiVersion: "apps/v1", kind, name: "erp-api", uid: "x" },
      });
    }
  });
});

describe("what a pod says about secrets: only the template's references count", () => {
  const refs = templateRefs(template(), "eu-west-1") as WatchedRef[];
  test("claims outside the template are named (to be logged) and never compared", () => {
    const p = podView(
      pod({
        records: [
          ...had,
          { secretId: "team-x/app/token", region: "eu-west-1", stage: "AWSCURRENT", versionId: "old" },
        ],
      }),
    ) as PodView;
    assert.deepEqual(claimsOutsideTemplate(p, refs), ["team-x/app/token AWSCURRENT (eu-west-1)"]);
    const withMine = new Map([
      ...current("db-1", "jwt-1"),
      [versionKey({ secretId: "team-x/app/token", region: "eu-west-1", stage: "AWSCURRENT" }), "new"],
    ]);
    assert.deepEqual(
      changesFor(p, refs, withMine),
      [],
      "an old version of a secret outside the template is no change",
    );
  });
});

describe("changesFor", () => {
  const v = podView(pod({ records: had })) as PodView;
  const refs = v.refs;
  test("a moved stage is a change, from → to", () => {
    assert.deepEqual(changesFor(v, refs, current("db-1", "jwt-2")), [{ ...JWT, from: "jwt-1", to: "jwt-2" }]);
  });
  test("unchanged, unknown (DescribeSecret failed) or a stage on no version: no change", () => {
    assert.deepEqual(changesFor(v, refs, current("db-1", "jwt-1")), []);
    assert.deepEqual(changesFor(v, refs, new Map([[versionKey(DB), "db-1"]])), []);
    assert.deepEqual(changesFor(v, refs, current("db-1", null)), []);
  });
  test("digest only (too many records to keep): compared as a whole", () => {
    const digestOnly = { ...v, fetched: { digest: v.fetched.digest } };
    assert.deepEqual(changesFor(digestOnly, refs, current("db-1", "jwt-1")), []);
    assert.equal(
      changesFor(digestOnly, refs, current("db-2", "jwt-1")).length,
      2,
      "which one is not known: both named",
    );
    assert.deepEqual(
      changesFor(digestOnly, refs, new Map([[versionKey(DB), "db-2"]])),
      [],
      "unknown: no change",
    );
    assert.deepEqual(
      changesFor(digestOnly, refs, current("db-2", null)),
      [],
      "a required secret gone: no restart",
    );
    // An optional reference with no secret behind it was not recorded: left out of the comparison.
    const withOptional = [
      ...refs,
      { secretId: "erp/optional", region: "eu-west-1", stage: "AWSCURRENT", optional: true },
    ];
    const opt = new Map([
      ...current("db-1", "jwt-1"),
      [versionKey({ secretId: "erp/optional", region: "eu-west-1", stage: "AWSCURRENT" }), null],
    ]);
    assert.deepEqual(changesFor(digestOnly, withOptional, opt), []);
    opt.set(versionKey(DB), "db-2");
    assert.equal(changesFor(digestOnly, withOptional, opt).length, 2);
  });
});

describe("restartMarker: the template's current versions as a whole, never the pod's claims", () => {
  const refs = templateRefs(template(), "eu-west-1") as WatchedRef[];
  test("the same current versions give the same marker, whatever a pod claims", () => {
    const m = restartMarker(refs, current("db-1", "jwt-1"));
    assert.match((m as { marker: string }).marker, /^[0-9a-f]{32}$/);
    const p = podView(pod({ records: had })) as PodView;
    const claimDbOld = restartCandidate(
      facts(),
      [{ pod: "a", changes: [{ ...DB, from: "db-0", to: "db-1" }] }],
      current("db-1", "jwt-1"),
    );
    const claimJwtOld = restartCandidate(
      facts(),
      [{ pod: "a", changes: [{ ...JWT, from: "jwt-0", to: "jwt-1" }] }],
      current("db-1", "jwt-1"),
    );
    assert.equal((claimDbOld as RestartCandidate).marker, (m as { marker: string }).marker);
    assert.equal(
      (claimJwtOld as RestartCandidate).marker,
      (m as { marker: string }).marker,
      "alternating claims: one marker",
    );
    assert.ok(p);
    assert.notDeepEqual(restartMarker(refs, current("db-1", "jwt-2")), m, "a real change: a new marker");
  });
  test("unknown or missing required versions: no marker, held with the reason", () => {
    assert.match(
      String(restartMarker(refs, new Map([[versionKey(DB), "db-1"]]))),
      /unknown \(DescribeSecret failed\)/,
    );
    assert.match(
      String(restartMarker(refs, current("db-1", null))),
      /on no version: nothing to restart into/,
    );
    assert.match(
      (restartCandidate(facts(), [{ pod: "a", changes: [] }], current("db-1", null)) as { why: string }).why,
      /on no version/,
    );
    assert.equal(restartCandidate(facts(), [], current("db-1", "jwt-1")), undefined, "no stale pod: nothing");
  });
});

describe("decideRestarts", () => {
  const v = podView(pod({ records: had })) as PodView;
  const changes = changesFor(v, v.refs, current("db-1", "jwt-2"));
  const now = Date.parse("2026-11-29T12:00:00Z");
  const candidate = (rotationAnnotations: Record<string, string> = {}) =>
    restartCandidate(
      { ...facts(), rotationAnnotations },
      [
        { pod: "erp-api-5d8f7c-fghij", changes },
        { pod: "erp-api-5d8f7c-abcde", changes },
      ],
      current("db-1", "jwt-2"),
    ) as RestartCandidate;

  test("one restart per workload, for all its stale pods", () => {
    const d = decideRestarts([candidate()], { now, minIntervalMs: 600_000 });
    assert.equal(d.restart.length, 1);
    assert.deepEqual(d.restart[0]?.pods, ["erp-api-5d8f7c-abcde", "erp-api-5d8f7c-fghij"]);
    assert.deepEqual(d.restart[0]?.changes, [{ ...JWT, from: "jwt-1", to: "jwt-2" }]);
    assert.equal(
      d.restart[0]?.marker,
      (restartMarker(facts().refs as WatchedRef[], current("db-1", "jwt-2")) as { marker: string }).marker,
    );
  });

  test("held: already restarted for these versions, or too recently", () => {
    const marker = candidate().marker;
    const same = decideRestarts([candidate({ [RESTARTED_FOR_ANNOTATION]: marker })], {
      now,
      minIntervalMs: 0,
    });
    assert.equal(same.restart.length, 0);
    assert.match(same.held[0]?.why ?? "", /already restarted/);
    const recent = decideRestarts(
      [
        candidate({
          [RESTARTED_AT_ANNOTATION]: new Date(now - 60_000).toISOString(),
          [RESTARTED_FOR_ANNOTATION]: "older",
        }),
      ],
      { now, minIntervalMs: 600_000 },
    );
    assert.equal(recent.restart.length, 0);
    assert.match(recent.held[0]?.why ?? "", /restarted 60 s ago \(minimum interval 600 s\)/);
    const later = decideRestarts(
      [
        candidate({
          [RESTARTED_AT_ANNOTATION]: new Date(now - 700_000).toISOString(),
          [RESTARTED_FOR_ANNOTATION]: "older",
        }),
      ],
      { now, minIntervalMs: 600_000 },
    );
    assert.equal(later.restart.length, 1, "a newer rotation after the interval");
  });
});
