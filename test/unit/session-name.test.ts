// The IRSA session name that names the pod in CloudTrail: within STS's limits for every input, the
// pod's own names as they are when they fit, and never the same for two pods.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import {
  MAX_SESSION_NAME,
  podSessionName,
  roleSessionName,
  SESSION_HASH_LENGTH,
  SESSION_NAME_PATTERN,
} from "../../src/fetch/session-name.ts";

/** A DNS label (a namespace): 1-63 of [a-z0-9-], alphanumeric at both ends. */
const dnsLabel = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/).filter((s) => s.length <= 63);
/** A DNS subdomain (a pod name): labels joined by dots, at most 253 characters. */
const dnsSubdomain = fc
  .array(dnsLabel, { minLength: 1, maxLength: 5 })
  .map((labels) => labels.join("."))
  .filter((s) => s.length <= 253);

describe("podSessionName", () => {
  test("a pod whose names fit: sm-injector.<namespace>.<pod>, exactly", () => {
    assert.equal(
      podSessionName("erp", "erp-api-7d9f8b6c4d-x2k9p"),
      "sm-injector.erp.erp-api-7d9f8b6c4d-x2k9p",
    );
    const longest = `${"n".repeat(20)}`;
    const pod = "p".repeat(MAX_SESSION_NAME - "sm-injector.".length - longest.length - 1);
    assert.equal(podSessionName(longest, pod).length, MAX_SESSION_NAME);
    assert.equal(podSessionName(longest, pod), `sm-injector.${longest}.${pod}`);
  });

  test("one character too long: cut, and ended by _ and the hash of the whole name", () => {
    const pod = "p".repeat(MAX_SESSION_NAME - "sm-injector.erp.".length + 1);
    const name = podSessionName("erp", pod);
    assert.equal(name.length, MAX_SESSION_NAME);
    assert.match(name, new RegExp(`^sm-injector\\.erp\\.p+_[0-9a-f]{${SESSION_HASH_LENGTH}}$`));
  });

  test("a Deployment's long pod name keeps the namespace and the Deployment's name readable", () => {
    const name = podSessionName("payments-production", "settlement-reconciliation-worker-7d9f8b6c4d-x2k9p");
    assert.match(name, /^sm-injector\.payments-production\.settlement-reconcilia_[0-9a-f]{10}$/);
  });

  test("always within STS's limits (2-64 of [\\w+=,.@-]), whatever the variables hold", () => {
    fc.assert(
      fc.property(
        fc.string({ unit: "binary", maxLength: 400 }),
        fc.string({ unit: "binary", maxLength: 400 }),
        (ns, pod) => {
          const name = podSessionName(ns, pod);
          assert.match(name, SESSION_NAME_PATTERN);
          assert.ok(name.length <= MAX_SESSION_NAME);
        },
      ),
      { numRuns: 2000 },
    );
  });

  test("hostile names: newlines, quotes, ARN-like text, Unicode, control characters", () => {
    for (const [ns, pod] of [
      ["erp", "a\nb"],
      ["erp", "x' OR '1'='1"],
      ["erp/../other", "pod"],
      ["erp", "arn:aws:iam::123456789012:role/admin"],
      ["ερπ", "πod"],
      ["erp", "\u0000\u001b[31m"],
      ["erp", "😀".repeat(40)],
      ["", ""],
    ] as const) {
      const name = podSessionName(ns, pod);
      assert.match(name, SESSION_NAME_PATTERN, JSON.stringify([ns, pod]));
      assert.match(name, /_[0-9a-f]{10}$/, "anything not a Kubernetes name is hashed");
    }
  });

  test("two different pods never share a name: Kubernetes names, cut or not", () => {
    fc.assert(
      fc.property(dnsLabel, dnsSubdomain, dnsLabel, dnsSubdomain, (ns1, pod1, ns2, pod2) => {
        fc.pre(ns1 !== ns2 || pod1 !== pod2);
        assert.notEqual(podSessionName(ns1, pod1), podSessionName(ns2, pod2));
      }),
      { numRuns: 3000 },
    );
  });

  test("pods of one long-named Deployment differ only after the cut: still distinct", () => {
    const base = "settlement-reconciliation-worker-with-a-long-name-7d9f8b6c4d-";
    const names = new Set<string>();
    for (let i = 0; i < 5000; i++)
      names.add(podSessionName("payments-production", `${base}${i.toString(36)}`));
    assert.equal(names.size, 5000);
  });

  test("a name that is used as it is never looks like a cut one, and the reverse", () => {
    fc.assert(
      fc.property(
        dnsLabel,
        dnsSubdomain,
        fc.string({ maxLength: 80 }),
        fc.string({ maxLength: 80 }),
        (ns, pod, a, b) => {
          const kube = podSessionName(ns, pod);
          const other = podSessionName(a, b);
          fc.pre(a !== ns || b !== pod);
          assert.notEqual(kube, other);
        },
      ),
      { numRuns: 2000 },
    );
  });
});

describe("roleSessionName: which runs get one", () => {
  const irsa = { AWS_ROLE_ARN: "arn:aws:iam::123456789012:role/erp-api", AWS_WEB_IDENTITY_TOKEN_FILE: "/t" };
  test("IRSA with the downward API's names", () => {
    assert.equal(
      roleSessionName({ ...irsa, POD_NAMESPACE: "erp", POD_NAME: "api-0" }),
      "sm-injector.erp.api-0",
    );
  });
  test("the pod's names win over an AWS_ROLE_SESSION_NAME already set", () => {
    assert.equal(
      roleSessionName({
        ...irsa,
        POD_NAMESPACE: "erp",
        POD_NAME: "api-0",
        AWS_ROLE_SESSION_NAME: "sm-injector.other.pod",
      }),
      "sm-injector.erp.api-0",
    );
  });
  test("no name for EKS Pod Identity (EKS names and tags the session), nor without the pod's names", () => {
    const podIdentity = { AWS_CONTAINER_CREDENTIALS_FULL_URI: "http://169.254.170.23/v1/credentials" };
    assert.equal(roleSessionName({ ...podIdentity, POD_NAMESPACE: "erp", POD_NAME: "api-0" }), undefined);
    assert.equal(roleSessionName({ ...irsa, POD_NAMESPACE: "erp" }), undefined);
    assert.equal(roleSessionName({ ...irsa, POD_NAME: "api-0" }), undefined);
    assert.equal(roleSessionName({ POD_NAMESPACE: "erp", POD_NAME: "api-0" }), undefined);
  });
});
