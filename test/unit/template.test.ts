// biome-ignore-all lint/suspicious/noTemplateCurlyInString: ${…} is the template syntax under test
// Templates: the syntax (with the position of each problem), the limits measured before parsing,
// and the filters held to what real readers decode.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { MAX_TEMPLATE_BYTES, MAX_TEMPLATE_PLACEHOLDERS } from "../../src/contract/fetch-spec.ts";
import { countPlaceholders, parseTemplate, templateLimitProblem } from "../../src/contract/template.ts";
import { jsonText, libpqQuote, TEMPLATE_FILTERS, urlencode } from "../../src/contract/template-filters.ts";

const parsed = (text: string) => {
  const r = parseTemplate(text);
  assert.ok(r.ok, `expected ${text} to parse: ${!r.ok && r.error}`);
  return r.value;
};
const refused = (text: string) => {
  const r = parseTemplate(text);
  assert.ok(!r.ok, `expected ${text} to be refused`);
  return r.error;
};

const RDS_URL =
  "postgresql://${db#username|urlencode}:${db#password|urlencode}@${db#host}:${db#port}/${db#dbname|urlencode}";

describe("template syntax", () => {
  test("the RDS URL: literal text between five placeholders, filters kept", () => {
    assert.deepEqual(parsed(RDS_URL), [
      "postgresql://",
      { ref: { secretId: "db", name: "db", key: "username", optional: false }, filter: "urlencode" },
      ":",
      { ref: { secretId: "db", name: "db", key: "password", optional: false }, filter: "urlencode" },
      "@",
      { ref: { secretId: "db", name: "db", key: "host", optional: false } },
      ":",
      { ref: { secretId: "db", name: "db", key: "port", optional: false } },
      "/",
      { ref: { secretId: "db", name: "db", key: "dbname", optional: false }, filter: "urlencode" },
    ]);
  });
  test("the whole reference syntax inside a placeholder: ARN, version stage or id, JSON key", () => {
    const arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:erp/production/rds-AbCdEf";
    const [p] = parsed(`\${${arn}?versionStage=AWSPREVIOUS#password|libpq}`);
    assert.deepEqual(p, {
      ref: {
        secretId: arn,
        arnRegion: "eu-west-1",
        name: "erp/production/rds-AbCdEf",
        versionStage: "AWSPREVIOUS",
        key: "password",
        optional: false,
      },
      filter: "libpq",
    });
  });
  test("$$ is a literal $, also right before a placeholder or a brace", () => {
    assert.deepEqual(parsed("a$$b$${x}${s}$$"), [
      "a$b${x}",
      { ref: { secretId: "s", name: "s", optional: false } },
      "$",
    ]);
  });
  test("refusals give the character where the problem starts", () => {
    assert.match(
      refused("host=${db#host} port=$PORT"),
      /^at character 22: a "\$" must start a placeholder \$\{…\}; write \$\$ for a literal \$/,
    );
    assert.match(refused("x${db#host"), /^at character 2: "\$\{" has no closing "\}"/);
    assert.match(refused("${}"), /^at character 1: "\$\{\}" names no secret/);
    assert.match(
      refused("ab${db#host|upper}"),
      /^at character 3: "\$\{db#host\|upper\}": "upper" is not a filter \(known: urlencode, libpq, json\)/,
    );
    assert.match(refused("${db#p|urlencode|json}"), /a placeholder takes one filter/);
    assert.match(
      refused("${erp/db x#k}"),
      /^at character 1: .*contains " ", which Secrets Manager names cannot contain/,
    );
    assert.match(
      refused("${db?versionStage=S&versionId=V#k}"),
      /set either versionStage or versionId, not both/,
    );
    assert.match(refused("${db?prefix=X_}"), /"prefix" only applies to env-from/);
  });
  test("positions count characters, not UTF-16 units or bytes", () => {
    assert.match(refused("é😀$x"), /^at character 3:/);
  });
  test("optional references are refused: a value composed without a part would be wrong, not absent", () => {
    assert.match(
      refused("${db?optional=true#password}"),
      /optional references are not allowed in a template/,
    );
    assert.equal(parsed("${db?optional=false#password}").length, 1);
  });
});

describe("limits, measured before parsing", () => {
  test("placeholders are counted in one scan; $${ is not one", () => {
    assert.equal(countPlaceholders(RDS_URL), 5);
    assert.equal(countPlaceholders("$${a}$$${b}${c"), 2);
    assert.equal(countPlaceholders("$"), 0);
  });
  test("too long, too many placeholders, or none at all", () => {
    assert.match(
      templateLimitProblem(`\${a}${"x".repeat(MAX_TEMPLATE_BYTES)}`) ?? "",
      /the template is 4,100 bytes; the limit is 4,096/,
    );
    assert.match(
      templateLimitProblem("${a}".repeat(MAX_TEMPLATE_PLACEHOLDERS + 1)) ?? "",
      /has 33 placeholders; the limit is 32/,
    );
    assert.match(
      templateLimitProblem("postgresql://$${x}") ?? "",
      /has no \$\{…\} placeholder, so it holds no secret/,
    );
    assert.equal(templateLimitProblem("${a}".repeat(MAX_TEMPLATE_PLACEHOLDERS)), undefined);
  });
});

describe("filters", () => {
  const bytes = (s: string) => Buffer.from(s, "utf8");
  test("urlencode: RFC 3986, everything but A-Z a-z 0-9 - . _ ~ as %XX of the UTF-8 bytes", () => {
    assert.equal(
      urlencode(bytes("p@ss:w/o?r#d% $'\"`+&=é~-._")).toString(),
      "p%40ss%3Aw%2Fo%3Fr%23d%25%20%24%27%22%60%2B%26%3D%C3%A9~-._",
    );
    // encodeURIComponent leaves ! ' ( ) * alone; they are reserved (sub-delims) in RFC 3986.
    assert.equal(urlencode(bytes("!'()*")).toString(), "%21%27%28%29%2A");
  });
  test("urlencode: any string comes back from decodeURIComponent, and only unreserved characters or %XX are written", () => {
    fc.assert(
      fc.property(fc.string({ unit: "grapheme" }), (s) => {
        const out = urlencode(bytes(s)).toString("latin1");
        assert.match(out, /^(?:[A-Za-z0-9._~-]|%[0-9A-F]{2})*$/);
        assert.equal(decodeURIComponent(out), s);
      }),
    );
  });
  test("libpq: always single-quoted, \\ before ' and \\", () => {
    assert.equal(libpqQuote(bytes("")).toString(), "''");
    assert.equal(libpqQuote(bytes(`it's a \\ pass word`)).toString(), `'it\\'s a \\\\ pass word'`);
  });
  test("json: a string becomes a JSON string; a raw JSON member (a number) stays as written", () => {
    assert.equal(jsonText({ bytes: bytes('a"b\n'), raw: false })?.toString(), '"a\\"b\\n"');
    assert.equal(jsonText({ bytes: bytes("5432"), raw: true })?.toString(), "5432");
    assert.equal(jsonText({ bytes: Buffer.from([0xff]), raw: false }), undefined, "not UTF-8: refused");
    fc.assert(
      fc.property(fc.string({ unit: "grapheme" }), (s) => {
        assert.equal(JSON.parse(jsonText({ bytes: bytes(s), raw: false })?.toString() ?? ""), s);
      }),
    );
  });
  test("every filter is documented", () => {
    for (const [name, f] of Object.entries(TEMPLATE_FILTERS)) assert.ok(f.doc.length > 20, name);
  });
});
