// The README is the front door: its annotation table must be the contract in
// src/contract/annotations.ts, its denial table the codes in src/admission/denials.ts, and every flag it
// names must exist.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { DENIALS } from "../../src/admission/denials.ts";
import { ANNOTATIONS, documentedKey } from "../../src/contract/annotations.ts";
import { FETCH_PROBLEMS } from "../../src/fetch/errors.ts";
import { WEBHOOK_FLAGS } from "../../src/webhook/config.ts";

const readme = readFileSync(join(import.meta.dirname, "..", "..", "README.md"), "utf8");

/** The rows (cells, `\|` unescaped) of the Markdown table between `<!-- name … -->` and `<!-- /name -->`. */
function tableRows(name: string): string[][] {
  const block = new RegExp(`<!-- ${name}[^>]*-->\\n([\\s\\S]*?)<!-- /${name} -->`).exec(readme)?.[1];
  assert.ok(block, `README lacks the ${name} block`);
  return block
    .trim()
    .split("\n")
    .slice(2)
    .map((r) =>
      r
        .replaceAll("\\|", "\u0000")
        .split("|")
        .slice(1, -1)
        .map((c) => c.trim().replaceAll("\u0000", "|")),
    );
}

test("the README's annotation table is exactly the contract", () => {
  const expected = Object.values(ANNOTATIONS).map((a) => [
    `\`${documentedKey(a)}\``,
    a.default,
    a.description,
  ]);
  assert.deepEqual(
    tableRows("annotations-table"),
    expected,
    "regenerate the table from src/contract/annotations.ts",
  );
});

test("the README's denial table lists exactly the denial codes", () => {
  const expected = Object.entries(DENIALS).map(([code, d]) => [`\`${code}\``, String(d.status), d.meaning]);
  assert.deepEqual(
    tableRows("denials-table"),
    expected,
    "regenerate the table from src/admission/denials.ts",
  );
});

/**
 * The troubleshooting table: every code a user can meet, from admission (DENIALS: the HTTP status
 * kubectl shows) and from the init container (FETCH_PROBLEMS: its exit status), in catalogue order.
 */
export function troubleshootingRows(): string[][] {
  return [
    ...Object.entries(DENIALS).map(([code, d]) => [
      `\`${code}\``,
      "admission",
      `HTTP ${d.status}`,
      d.meaning,
    ]),
    ...Object.entries(FETCH_PROBLEMS).map(([code, p]) => [
      `\`${code}\``,
      "init container",
      `exit ${p.exit}`,
      p.meaning,
    ]),
  ];
}

test("the README's troubleshooting table lists exactly the admission and fetch problem codes", () => {
  assert.ok(
    readme.includes("<!-- troubleshooting-table"),
    "README lacks the troubleshooting table (the block between <!-- troubleshooting-table … --> and <!-- /troubleshooting-table -->): paste it from `node --import tsx test/unit/readme.test.ts --print-troubleshooting`",
  );
  assert.deepEqual(
    tableRows("troubleshooting-table"),
    troubleshootingRows(),
    "regenerate the table: node --import tsx test/unit/readme.test.ts --print-troubleshooting",
  );
});

/** The table as Markdown, padded like the README's others. */
function markdownTable(header: string[], rows: string[][]): string {
  const escaped = rows.map((r) => r.map((c) => c.replaceAll("|", "\\|")));
  const widths = header.map((h, i) => Math.max(h.length, ...escaped.map((r) => (r[i] as string).length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i] as number)).join(" | ")} |`;
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...escaped.map(line)].join("\n");
}

if (process.argv.includes("--print-troubleshooting"))
  process.stdout.write(
    `<!-- troubleshooting-table: checked against src/admission/denials.ts and src/fetch/errors.ts by test/unit/readme.test.ts -->\n${markdownTable(["Code", "Where", "Status", "Meaning"], troubleshootingRows())}\n<!-- /troubleshooting-table -->\n`,
  );

test("every webhook flag the README names exists", () => {
  const tableRows = readme.split("\n").filter((l) => l.startsWith("| `--"));
  assert.ok(tableRows.length >= 5, "README lacks the webhook flag table");
  const flags = tableRows.flatMap((l) => [...l.matchAll(/`--([a-z-]+)`/g)].map((m) => m[1] as string));
  const known = new Set([...Object.keys(WEBHOOK_FLAGS), "shutdown-delay-seconds", "diff"]);
  const unknown = flags.filter((f) => !known.has(f));
  assert.deepEqual(unknown, []);
  for (const [flag, { env }] of Object.entries(WEBHOOK_FLAGS)) {
    if (env && readme.includes(`\`--${flag}\``))
      assert.ok(readme.includes(env), `README names --${flag} but not ${env}`);
  }
});
