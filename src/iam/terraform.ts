// Policy documents as Terraform `data "aws_iam_policy_document"` blocks, in the layout `terraform fmt`
// (hclwrite) produces, so the output can be committed as is. Pure.
import type { PolicyDocument, Statement } from "./policy.ts";

export interface NamedDocument {
  /** The data source's label (see terraformLabel). */
  label: string;
  /** Comment lines above the block. */
  comment: string[];
  document: PolicyDocument;
}

const HCL_ESCAPES: Record<string, string> = {
  "\\": "\\\\",
  '"': '\\"',
  "\n": "\\n",
  "\r": "\\r",
  "\t": "\\t",
};

/**
 * A Terraform string literal: HCL's escapes (it has no \b or \f, so other control characters
 * become \uNNNN) and its template sequences `${` and `%{` doubled so they stay literal text.
 */
export function hclString(s: string): string {
  const body = s
    .replace(
      // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it escapes
      /[\\"\n\r\t]|[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g,
      (c) => HCL_ESCAPES[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
    )
    .replace(/\$\{/g, () => "$${")
    .replace(/%\{/g, "%%{");
  return `"${body}"`;
}

/** A comment line: printable text only, so nothing in it can end the comment or start code. */
function commentLine(text: string): string {
  return `# ${text.replace(/[^\x20-\x7e]/g, "?")}`.trimEnd();
}

/** A label Terraform accepts ([A-Za-z_][A-Za-z0-9_-]*), unique among `taken`. */
export function terraformLabel(base: string, taken: Set<string>): string {
  let label = base.replace(/[^A-Za-z0-9_-]/g, "_").replace(/^(?=[^A-Za-z_])/, "_") || "_";
  for (let n = 2; taken.has(label); n++) label = `${label.replace(/_\d+$/, "")}_${n}`;
  taken.add(label);
  return label;
}

type Attr = [name: string, value: string | string[]];

/**
 * Attributes in hclwrite's layout: `=` aligned across consecutive one-line attributes (a list of one
 * item is one line), longer lists one item a line.
 */
function attributes(attrs: readonly Attr[], indent: string): string[] {
  const lines: string[] = [];
  let run: [string, string][] = [];
  const flush = () => {
    const width = Math.max(0, ...run.map(([n]) => n.length));
    for (const [n, v] of run) lines.push(`${indent}${n.padEnd(width)} = ${v}`);
    run = [];
  };
  for (const [name, value] of attrs) {
    if (typeof value === "string") run.push([name, hclString(value)]);
    else if (value.length === 1) run.push([name, `[${hclString(value[0] as string)}]`]);
    else {
      flush();
      lines.push(`${indent}${name} = [`, ...value.map((v) => `${indent}  ${hclString(v)},`), `${indent}]`);
    }
  }
  flush();
  return lines;
}

function block(name: string, attrs: readonly Attr[], indent: string, inner: string[][] = []): string[] {
  const nested = inner.flatMap((b) => ["", ...b]);
  return [`${indent}${name} {`, ...attributes(attrs, `${indent}  `), ...nested, `${indent}}`];
}

function statementBlock(s: Statement): string[] {
  const attrs: Attr[] = [
    ["sid", s.Sid],
    ["effect", s.Effect],
    ["actions", s.Action],
  ];
  if (s.Resource) attrs.push(["resources", s.Resource]);
  const inner: string[][] = [];
  if (s.Principal) {
    const [type, id] = Object.entries(s.Principal)[0] as [string, string];
    inner.push(
      block(
        "principals",
        [
          ["type", type],
          ["identifiers", [id]],
        ],
        "    ",
      ),
    );
  }
  for (const [test, keys] of Object.entries(s.Condition ?? {}))
    for (const [variable, values] of Object.entries(keys))
      inner.push(
        block(
          "condition",
          [
            ["test", test],
            ["variable", variable],
            ["values", values],
          ],
          "    ",
        ),
      );
  return block("statement", attrs, "  ", inner);
}

function dataBlock(d: NamedDocument): string[] {
  const statements = d.document.Statement.map(statementBlock);
  return [
    ...d.comment.map(commentLine),
    `data "aws_iam_policy_document" ${hclString(d.label)} {`,
    ...statements.flatMap((s, i) => (i === 0 ? s : ["", ...s])),
    "}",
  ];
}

export function renderTerraform(docs: readonly NamedDocument[], header: readonly string[] = []): string {
  const parts = [header.map(commentLine), ...docs.map(dataBlock)].filter((p) => p.length > 0);
  return `${parts.map((p) => p.join("\n")).join("\n\n")}\n`;
}
