// The per-namespace secret policy: what name and ARN patterns admit, allowed regions, invalid
// policies (fail closed), denials that never quote the policy, and a glob matcher that agrees
// with the regular expression it replaced while running in linear time.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { MAX_POLICY_PATTERN_CHARS, MAX_POLICY_PATTERNS } from "../../src/contract/annotations.ts";
import type { FetchEntry } from "../../src/contract/fetch-spec.ts";
import {
  checkSecretPolicy,
  globMatch,
  NAMESPACE_POLICY_ANNOTATION,
  NAMESPACE_REGIONS_ANNOTATION,
  namespacePolicy,
  parseSecretPolicy,
} from "../../src/contract/policy.ts";

const ACCOUNT = "123456789012";
const OTHER = "999999999999";
const arn = (region: string, account: string, name: string) =>
  `arn:aws:secretsmanager:${region}:${account}:secret:${name}`;

/** The spec parts the policy reads, for references resolved in `region` (names) or their ARN's. */
function spec(ids: string[], region = "eu-west-1") {
  const entries: FetchEntry[] = ids.map((secretId, i) => ({
    kind: "value",
    env: `V${i}`,
    optional: false,
    source: { secretId, region: secretId.startsWith("arn:") ? (secretId.split(":")[3] as string) : region },
  }));
  return { secretIds: ids, entries };
}

function denials(
  policy: string | undefined,
  ids: string[],
  opts: { regions?: string; region?: string } = {},
) {
  return checkSecretPolicy(spec(ids, opts.region), parseSecretPolicy(policy, opts.regions), "erp-prod");
}

describe("name patterns", () => {
  test("a name matching a pattern is allowed, others are refused", () => {
    assert.deepEqual(denials("erp/production/*, erp/shared/*", ["erp/production/db", "erp/shared/x"]), []);
    const [d] = denials("erp/production/*", ["erp/staging/db"]);
    assert.match(
      d as string,
      /^secret "erp\/staging\/db" is not allowed in namespace erp-prod by its sm-injector.io\/allowed-secrets annotation; ask the platform team/,
    );
  });

  test("`*` matches any run, `/` included; everything else is literal", () => {
    assert.deepEqual(denials("erp/*/db", ["erp/a/b/db"]), []);
    assert.equal(denials("erp/p.db", ["erp/pxdb"]).length, 1);
    assert.equal(denials("erp/p+db", ["erp/ppdb"]).length, 1);
  });

  test("an ARN in another account with an allowed-looking name is not admitted by a name pattern", () => {
    const [d] = denials("erp/production/*", [arn("eu-west-1", OTHER, "erp/production/db-AbCdEf")]);
    assert.match(
      d as string,
      /a reference by ARN must match an ARN pattern, which pins its account and region/,
    );
  });

  test("no patterns (an empty annotation) allow nothing; no annotation allows everything", () => {
    assert.equal(denials("", ["erp/production/db"]).length, 1);
    assert.deepEqual(denials(undefined, ["anything", arn("us-east-1", OTHER, "x")]), []);
  });
});

describe("ARN patterns", () => {
  const policy = `arn:aws:secretsmanager:eu-west-1:${ACCOUNT}:secret:erp/production/*`;

  test("pin the account and the region", () => {
    assert.deepEqual(denials(policy, [arn("eu-west-1", ACCOUNT, "erp/production/db-AbCdEf")]), []);
    assert.equal(denials(policy, [arn("eu-west-1", OTHER, "erp/production/db-AbCdEf")]).length, 1);
    assert.equal(denials(policy, [arn("us-east-1", ACCOUNT, "erp/production/db-AbCdEf")]).length, 1);
  });

  test("do not admit names (a name pattern does)", () => {
    assert.equal(denials(policy, ["erp/production/db"]).length, 1);
    assert.deepEqual(denials(`erp/production/*, ${policy}`, ["erp/production/db"]), []);
  });

  test("`*` in one field never spans into the next", () => {
    const anyRegion = `arn:aws:secretsmanager:*:${ACCOUNT}:secret:erp/*`;
    assert.deepEqual(denials(anyRegion, [arn("ap-southeast-2", ACCOUNT, "erp/x")]), []);
    assert.equal(denials(anyRegion, [arn("ap-southeast-2", OTHER, "erp/x")]).length, 1);
    // A field glob that would need to swallow ":" to match.
    assert.equal(
      denials("arn:aws:secretsmanager:*:secret:erp/*", [arn("eu-west-1", ACCOUNT, "erp/x")]).length,
      1,
    );
  });

  test("another partition is another pattern", () => {
    assert.equal(
      denials(policy, [`arn:aws-cn:secretsmanager:eu-west-1:${ACCOUNT}:secret:erp/production/x`]).length,
      1,
    );
  });
});

describe("allowed regions", () => {
  test("refuse a secret read in another region, named by name or by ARN", () => {
    const regions = "eu-west-1, eu-central-1";
    assert.deepEqual(denials("erp/*", ["erp/a"], { regions, region: "eu-central-1" }), []);
    const [d] = denials("erp/*", ["erp/a"], { regions, region: "us-east-1" });
    assert.match(
      d as string,
      /secret "erp\/a" would be read in region us-east-1, which namespace erp-prod does not allow \(its sm-injector.io\/allowed-regions annotation\)/,
    );
    assert.equal(
      denials(`arn:aws:secretsmanager:*:${ACCOUNT}:secret:erp/*`, [arn("us-east-1", ACCOUNT, "erp/a")], {
        regions,
      }).length,
      1,
    );
  });

  test("alone, allow any secret in those regions", () => {
    assert.deepEqual(denials(undefined, ["x", arn("eu-west-1", OTHER, "y")], { regions: "eu-west-1" }), []);
    assert.equal(denials(undefined, ["x"], { regions: "eu-west-1", region: "us-west-2" }).length, 1);
  });

  test("are read from the Namespace with the secret patterns", () => {
    const p = namespacePolicy({
      [NAMESPACE_POLICY_ANNOTATION]: "erp/*",
      [NAMESPACE_REGIONS_ANNOTATION]: "eu-west-1",
      other: "x",
    });
    assert.deepEqual(p?.regions, ["eu-west-1"]);
    assert.equal(namespacePolicy({ other: "x" }), undefined);
  });
});

describe("an invalid policy refuses everything (fail closed), and says so without quoting it", () => {
  const cases: [string, string | undefined, string | undefined][] = [
    [
      "too many patterns",
      Array(MAX_POLICY_PATTERNS + 1)
        .fill("erp/*")
        .join(","),
      undefined,
    ],
    ["a pattern too long", `erp/${"x".repeat(MAX_POLICY_PATTERN_CHARS)}*`, undefined],
    ["an ARN pattern without its 7 fields", "arn:aws:secretsmanager:erp/*", undefined],
    ["an ARN pattern for another service", `arn:aws:ssm:eu-west-1:${ACCOUNT}:parameter:erp/*`, undefined],
    ["a name pattern with a colon", "erp:production/*", undefined],
    ["a region that is not a region", "erp/*", "eu-west-1, Frankfurt"],
  ];
  for (const [name, value, regions] of cases) {
    test(name, () => {
      const policy = parseSecretPolicy(value, regions);
      assert.ok(policy?.problems && policy.problems.length > 0, "no problem reported");
      const d = checkSecretPolicy(spec(["erp/a"]), policy, "erp-prod");
      assert.equal(d.length, 1);
      assert.match(
        d[0] as string,
        /namespace erp-prod's .* policy is not valid, so it allows no secret; ask the platform team/,
      );
      assert.ok(!d[0]?.includes("erp/*") && !d[0]?.includes("Frankfurt"), "the denial quotes the policy");
    });
  }
});

test("denials name the secret, namespace and annotation, never the policy's patterns", () => {
  const patterns = `erp/production/*, arn:aws:secretsmanager:eu-west-1:${ACCOUNT}:secret:erp/shared/*`;
  const d = denials(patterns, ["erp/staging/db", arn("eu-west-1", OTHER, "erp/shared/x")]);
  assert.equal(d.length, 2);
  for (const m of d) {
    assert.match(m, /namespace erp-prod by its sm-injector.io\/allowed-secrets annotation/);
    assert.ok(!m.includes("erp/production/*") && !m.includes("erp/shared/*") && !m.includes(ACCOUNT));
  }
});

describe("glob matching", () => {
  /** The matcher before: a regular expression per pattern (backtracks on many `*`). */
  function oldRegExp(glob: string): RegExp {
    const escaped = glob.replace(/[.+?^${}()|[\]\\=@-]/g, "\\$&").replace(/\*/g, ".*");
    return new RegExp(`^${escaped}$`);
  }

  test("agrees with the regular expression it replaced on small random inputs", () => {
    const alphabet = fc.constantFrom("a", "b", "/", "-", ".", ":", "*");
    const text = fc
      .array(fc.constantFrom("a", "b", "/", "-", ".", ":"), { maxLength: 12 })
      .map((a) => a.join(""));
    const glob = fc.array(alphabet, { maxLength: 8 }).map((a) => a.join(""));
    fc.assert(
      fc.property(glob, text, (g, t) => globMatch(g, t) === oldRegExp(g).test(t)),
      { numRuns: 20_000 },
    );
  });

  test("agrees on names built from the pattern's own pieces (where matches are likely)", () => {
    const piece = fc.constantFrom("erp", "/", "prod", "-", "db", "x");
    fc.assert(
      fc.property(
        fc.array(fc.oneof(piece, fc.constant("*")), { maxLength: 7 }),
        fc.array(piece, { maxLength: 9 }),
        (g, t) => globMatch(g.join(""), t.join("")) === oldRegExp(g.join("")).test(t.join("")),
      ),
      { numRuns: 20_000 },
    );
  });

  test("edge cases", () => {
    assert.ok(globMatch("*", ""));
    assert.ok(globMatch("", ""));
    assert.ok(!globMatch("", "a"));
    assert.ok(globMatch("a*a", "aa"));
    assert.ok(!globMatch("a*a", "a"));
    assert.ok(globMatch("**", "x"));
    assert.ok(globMatch("*ab*ab*", "abab"));
    assert.ok(!globMatch("*ab*ab*", "aba"));
  });

  test("a pattern with many stars against a 512-character name answers (linear, no backtracking)", () => {
    // 805 ms per reference with the old regular expression; this finishes in microseconds.
    assert.equal(globMatch("team-*/*/*/*/db", `team-${"a/".repeat(253)}x`), false);
    assert.equal(denials("team-*/*/*/*/db", Array(50).fill(`team-${"a/".repeat(253)}x`)).length, 20 + 1);
  });
});
