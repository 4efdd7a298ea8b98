// Issue 11, case 13 (docs): what the real pydantic-settings does to a value, held to the README's
// statement. `format: files` writes exact bytes, but `secrets_dir` reads each file with
// Path.read_text().strip(): surrounding whitespace goes (a PEM key loses its final newline) and
// CR / CRLF become LF. `format: dotenv` read with `env_file=` gives the value back exactly (the
// encoder refuses what python-dotenv would change), and so does reading the file's bytes directly.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { EncodeError, type EnvVar, renderDotenv, renderFiles } from "../../src/envfile/index.ts";
import { readWithPydanticSettings } from "../helpers/roundtrip.ts";

const PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n";
const VALUES: Record<string, string> = {
  PEM,
  PADDED: "  s3cr3t\t ",
  CRLF: "line one\r\nline two",
  NBSP: "\u00a0token\u2003",
};

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "sm-injector-pydantic-"));
});
after(() => rm(dir, { recursive: true, force: true }));

const vars = (names: string[]): EnvVar[] =>
  names.map((name) => ({ name, value: Buffer.from(VALUES[name] as string, "utf8") }));

describe("pydantic-settings secrets_dir (format: files)", () => {
  test("the files hold the exact bytes, but secrets_dir strips whitespace and turns CR into LF", async () => {
    const secretsDir = join(dir, "files");
    await mkdir(secretsDir);
    for (const f of renderFiles(vars(Object.keys(VALUES))))
      await writeFile(join(secretsDir, f.fileName), f.content);
    assert.equal(await readFile(join(secretsDir, "PEM"), "utf8"), PEM, "the file itself is exact");

    const got = await readWithPydanticSettings({ secretsDir }, Object.keys(VALUES));
    assert.deepEqual(Object.fromEntries(got), {
      PEM: PEM.trimEnd(), // the final newline is gone
      PADDED: "s3cr3t",
      CRLF: "line one\nline two",
      NBSP: "token", // Python's str.strip: Unicode whitespace too
    });
  });
});

describe("what keeps the bytes exact", () => {
  test("format: dotenv read with env_file: the PEM with its final newline, the padding kept", async () => {
    const envFile = join(dir, "dotenv");
    const exact = ["PEM", "PADDED", "NBSP"];
    await writeFile(envFile, renderDotenv(vars(exact)));
    const got = await readWithPydanticSettings({ envFile }, exact);
    for (const name of exact) assert.equal(got.get(name), VALUES[name], name);
  });

  test("format: dotenv refuses a carriage return rather than change it", () => {
    assert.throws(() => renderDotenv(vars(["CRLF"])), EncodeError);
  });
});

describe("the README says so", () => {
  const readme = readFileSync(join(import.meta.dirname, "..", "..", "README.md"), "utf8");

  // The lead pastes the paragraph from the issue-11 report (section "Reading the secrets in the app").
  test("a paragraph on secrets_dir stripping whitespace, and what keeps bytes exact", () => {
    const says = (re: RegExp) => assert.ok(re.test(readme), `README does not say ${re}`);
    says(/`secrets_dir`[^\n]*strips/);
    says(/final newline/);
    says(/carriage return/i);
  });
});
