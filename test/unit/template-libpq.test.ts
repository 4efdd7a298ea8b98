// biome-ignore-all lint/suspicious/noTemplateCurlyInString: ${…} is the template syntax under test
// The urlencode and libpq filters held to the real reader: libpq's own connection-string parser
// (PQconninfoParse, through psycopg's conninfo_to_dict), for a URL and for key=value, with random
// passwords and the ones that break naive composition.
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import fc from "fast-check";
import { libpqQuote, urlencode } from "../../src/contract/template-filters.ts";
import { run } from "../helpers/roundtrip.ts";

const PARSE = `
import json, sys
from psycopg.conninfo import conninfo_to_dict
out = []
for s in json.load(open(sys.argv[1], encoding="utf-8")):
    try:
        out.append(conninfo_to_dict(s).get("password"))
    except Exception as e:
        out.append({"error": type(e).__name__})
print(json.dumps(out))
`;

/** The password libpq reads from each connection string, in one Python process. */
async function libpqPasswords(conninfos: readonly string[]): Promise<unknown[]> {
  const file = join(tmpdir(), `sm-injector-libpq-${process.pid}.json`);
  await writeFile(file, JSON.stringify(conninfos));
  const r = await run("python3", ["-c", PARSE, file], { env: { ...process.env, PYTHONUTF8: "1" } });
  assert.equal(r.code, 0, r.stderr.toString());
  return JSON.parse(r.stdout.toString("utf8"));
}

const HOSTILE = [`@:/?#%$'" \\\`é`, "", " leading and trailing ", "'", "\\", "a=b c=d", "%41%", "pässwörd😀"];

test("libpq reads back every password composed with urlencode (URL) or libpq (key=value)", async () => {
  // No NUL: no C string (and no environment variable) can hold one.
  const random = fc.sample(
    fc.string({ unit: "grapheme", maxLength: 40 }).filter((s) => !s.includes("\0")),
    200,
  );
  const passwords = [...HOSTILE, ...random];
  const conninfos = passwords.flatMap((p) => {
    const b = Buffer.from(p, "utf8");
    return [
      `postgresql://app:${urlencode(b).toString("latin1")}@db.internal:5432/erp`,
      `host=db.internal port=5432 user=app password=${libpqQuote(b).toString("utf8")} dbname=erp`,
    ];
  });
  const got = await libpqPasswords(conninfos);
  const expected = passwords.flatMap((p) => [p === "" ? null : p, p]);
  // An empty userinfo password is no password at all in a URL (libpq: absent, not "").
  assert.deepEqual(got, expected);
});
