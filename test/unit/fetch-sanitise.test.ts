// Issue 11, case 8: error text from AWS, Node or a parser never carries a value into a log line,
// breaks a line or grows without bound. Pure: the errors the SDK throws are built by hand here; the
// same failures through the real SDK are in test/integration/fetch-values.test.ts.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { AwsCallError, callErrorLine, identityFromEnv } from "../../src/fetch/errors.ts";
import { classify } from "../../src/fetch/retry.ts";

const PLANTED = "PLANTED-7f3a-s3cr3t-v4lu3-0042";
const ctx = { identity: identityFromEnv({}), timeoutSeconds: 30, defaultRegion: "eu-west-1" };
const source = { secretId: "erp/staging/jwt/secret_key" };

function parseError(text: string): Error {
  try {
    JSON.parse(text);
  } catch (e) {
    return e as Error;
  }
  throw new Error("parsed");
}

function toLine(err: unknown): string {
  const c = classify(err);
  return callErrorLine(source, new AwsCallError(c.code, c.message, "call", 1), ctx);
}

function assertNoPieceOf(value: string, text: string) {
  for (let i = 0; i + 8 <= value.length; i++)
    assert.ok(!text.includes(value.slice(i, i + 8)), `${JSON.stringify(value.slice(i, i + 8))} in ${text}`);
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it looks for
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

describe("a response the SDK could not parse", () => {
  test("JSON.parse's message quotes the body: a fixed description instead", () => {
    const e = parseError(`{"SecretString":${PLANTED}}`);
    assert.ok(e.message.includes("PLANTED-7f"), "the premise: V8 quotes the text");
    const line = toLine(e);
    assert.match(line, /: MalformedResponse as .* could not be parsed/);
    assertNoPieceOf(PLANTED, line);
  });

  test("any error the SDK marks with $responseBodyText (the XML parser for STS too)", () => {
    const e = Object.assign(new Error(`Unclosed tag near <SecretAccessKey>${PLANTED}`), {
      $responseBodyText: `<SecretAccessKey>${PLANTED}`,
    });
    const c = classify(e);
    assert.equal(c.code, "MalformedResponse");
    assert.equal(c.retryable, false);
    assertNoPieceOf(PLANTED, c.message);
  });
});

describe("AWS and Node text is cleaned and capped", () => {
  test("a 2 MB message: about 200 characters, marked as cut", () => {
    const e = new AwsCallError("ValidationException", "x".repeat(2_000_000), "call", 1);
    assert.ok(e.message.length <= 201, String(e.message.length));
    assert.ok(e.message.endsWith("…"));
  });

  test("newlines, carriage returns, terminal escapes, bidi overrides and lone surrogates become spaces", () => {
    const e = new AwsCallError("E", "a\nb\r\nc\u001b[31md\u202ee\u2028f\ud800g\u0085h", "call", 1);
    assert.equal(e.message, "a b c [31md e f g h");
  });

  test("an error code that is not an AWS code is replaced", () => {
    assert.equal(new AwsCallError("Bad\nCode", "m", "call", 1).code, "Error");
    assert.equal(new AwsCallError("X".repeat(65), "m", "call", 1).code, "Error");
    assert.equal(new AwsCallError("ThrottlingException", "m", "call", 1).code, "ThrottlingException");
  });

  test("property: every error line is one bounded line without control characters", () => {
    fc.assert(
      fc.property(
        fc.string({ unit: "binary", maxLength: 3000 }),
        fc.string({ unit: "binary", maxLength: 80 }),
        (message, code) => {
          const line = toLine(Object.assign(new Error(message), { name: code }));
          assert.doesNotMatch(line, UNSAFE);
          assert.ok(line.length <= 1024, String(line.length));
        },
      ),
      { numRuns: 500 },
    );
  });
});
