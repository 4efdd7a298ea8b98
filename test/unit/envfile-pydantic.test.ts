// Issue 11, case 13 (docs): the README's statement on pydantic-settings, held to the real library.
// `format: files` writes exact bytes, but `secrets_dir` reads each file with
// Path.read_text().strip(): surrounding whitespace goes (a PEM key loses its final newline) and
// CR / CRLF become LF. `format: dotenv` read with `env_file=` gives the value back exactly (the
// encoder refuses what python-dotenv would change). Each test checks both the README (which says
// so since issue 11) and the library, so either drifting fails it.
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

const readme = readFileSync(join(import.meta.dirname, "..", "..", "README.md"), "utf8");
/** The README paragraph on pydantic-settings (pasted by the lead from the issue-11 report). */
const paragraph =
  /\*\*`format: files` with pydantic-settings `secrets_dir` strips whitespace\.\*\*[\s\S]*?\n\n/.exec(
    readme,
  )?.[0];

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), "sm-injector-pydantic-"));
});
after(() => rm(dir, { recursive: true, force: true }));

const vars = (names: string[]): EnvVar[] =>
  names.map((name) => ({ name, value: Buffer.from(VALUES[name] as string, "utf8") }));

describe("README: pydantic-settings and exact bytes", () => {
  test("format: files + secrets_dir strips whitespace (a PEM key loses its final newline) and turns CR into LF", async () => {
    assert.ok(paragraph, "README lacks the paragraph on secrets_dir stripping whitespace");
    for (const words of ["final newline", "Unicode spaces", "carriage return"])
      assert.ok(paragraph.includes(words), `README paragraph does not say "${words}"`);

    const secretsDir = join(dir, "files");
    await mkdir(secretsDir);
    for (const f of renderFiles(vars(Object.keys(VALUES))))
      await writeFile(join(secretsDir, f.fileName), f.content);
    assert.equal(await readFile(join(secretsDir, "PEM"), "utf8"), PEM, "the file itself is exact");
    const got = await readWithPydanticSettings({ secretsDir }, Object.keys(VALUES));
    assert.deepEqual(Object.fromEntries(got), {
      PEM: PEM.trimEnd(),
      PADDED: "s3cr3t",
      CRLF: "line one\nline two",
      NBSP: "token", // Python's str.strip: Unicode whitespace too
    });
  });

  test("format: dotenv + env_file keeps the bytes, and refuses a carriage return rather than change it", async () => {
    assert.ok(
      paragraph?.includes("`format: dotenv` with"),
      "README paragraph does not recommend format: dotenv",
    );
    const envFile = join(dir, "dotenv");
    const exact = ["PEM", "PADDED", "NBSP"];
    await writeFile(envFile, renderDotenv(vars(exact)));
    const got = await readWithPydanticSettings({ envFile }, exact);
    for (const name of exact) assert.equal(got.get(name), VALUES[name], name);
    assert.throws(() => renderDotenv(vars(["CRLF"])), EncodeError);
  });
});
