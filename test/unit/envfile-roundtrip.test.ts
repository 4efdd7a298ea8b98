// Property tests: random values and names, read back by the real consumers of each format.
import assert from "node:assert/strict";
import { isUtf8 } from "node:buffer";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { parseEnv } from "node:util";
import fc from "fast-check";
import {
  EncodeError,
  type EnvVar,
  renderDotenv,
  renderJson,
  renderShellEnv,
} from "../../src/envfile/index.ts";
import {
  isShellAvailable,
  type PythonDotenvParser,
  parseWithNodeEnvFile,
  SHELLS,
  type Shell,
  sourceWithShell,
  startPythonDotenvParser,
} from "../helpers/roundtrip.ts";

// SM_INJECTOR_FUZZ_RUNS=1000 for a longer soak.
const RUNS = Number(process.env.SM_INJECTOR_FUZZ_RUNS ?? 50);
const MAX_VARS = 20;

/** Bytes that mean something to a shell, a dotenv parser or UTF-8 (0x81-0x88 are ash/dash internals). */
const SPECIAL_BYTES = [
  ...Buffer.from("'\"\\`$#={}:-\n\r\t\v\f nabx"),
  0x01,
  0x7f,
  0x80,
  0x81,
  0x82,
  0x83,
  0x84,
  0x85,
  0x86,
  0x87,
  0x88,
  0xc3,
  0xa9,
  0xff,
];
const byteValue = fc
  .array(fc.oneof(fc.constantFrom(...SPECIAL_BYTES), fc.integer({ min: 1, max: 255 })), { maxLength: 40 })
  .map((bytes) => Buffer.from(bytes));

/** Pieces that stress the dotenv parsers' quoting, escapes, comments, whitespace and interpolation. */
const TOKENS = [
  "'",
  '"',
  "`",
  "\\",
  "\\\\",
  "\\n",
  "\\'",
  '\\"',
  "$",
  "${",
  "}",
  ":-",
  ":",
  "#",
  " #",
  "=",
  "\n",
  "\r",
  " ",
  "\t",
  "\v",
  "\x1c",
  "\u0085",
  "\u00a0",
  "\u2028",
  "\ufeff",
  "export ",
  "[x]",
  "A",
  "n",
  "é",
  "😀",
];
const textValue = fc
  .array(fc.oneof(fc.constantFrom(...TOKENS), fc.string({ unit: "binary", maxLength: 3 })), { maxLength: 12 })
  .map((parts) => Buffer.from(parts.join("").replaceAll("\0", ""), "utf8"));
/** Like textValue, without the characters that force a refusal, so that most values are accepted. */
const tameTextValue = textValue.map((v) =>
  Buffer.from(v.toString("utf8").replace(/['\r]|\$\{/g, ""), "utf8"),
);

const anyValue = fc.oneof(byteValue, textValue, tameTextValue);

/** Random distinct names; the prefix keeps clear of names a shell treats specially (UID, PATH, IFS...). */
function namedVars(value: fc.Arbitrary<Buffer>): fc.Arbitrary<EnvVar[]> {
  return fc
    .uniqueArray(fc.stringMatching(/^[A-Za-z0-9_]{1,12}$/), { minLength: 1, maxLength: MAX_VARS })
    .chain((suffixes) =>
      fc
        .tuple(...suffixes.map(() => value))
        .map((values) =>
          suffixes.map((suffix, i) => ({ name: `T_${suffix}`, value: values[i] ?? Buffer.alloc(0) })),
        ),
    );
}

let dir: string;
let python: PythonDotenvParser;
let fileCount = 0;
async function writeTemp(content: Buffer | string): Promise<string> {
  const file = join(dir, `file-${fileCount++}`);
  await writeFile(file, content);
  return file;
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "sm-injector-roundtrip-"));
  python = startPythonDotenvParser();
});
after(async () => {
  await python.close();
  await rm(dir, { recursive: true, force: true });
});

function dotenvVerdict(v: EnvVar): EncodeError | undefined {
  try {
    renderDotenv([v]);
    return undefined;
  } catch (error) {
    if (error instanceof EncodeError) return error;
    throw error;
  }
}

describe("shell format round-trips random bytes", () => {
  const shells: Array<[Shell, NodeJS.ProcessEnv]> = SHELLS.map((shell) => [
    shell,
    { PATH: process.env.PATH },
  ]);
  shells.push(["bash", { PATH: process.env.PATH, LC_ALL: "C.UTF-8" }]);
  for (const [shell, env] of shells) {
    const label = env.LC_ALL ? `${shell} (LC_ALL=${env.LC_ALL})` : shell;
    test(`. FILE in ${label}`, async (t) => {
      if (!isShellAvailable(shell)) {
        t.skip(`${shell} is not installed (apt-get install ${shell})`);
        return;
      }
      await fc.assert(
        fc.asyncProperty(namedVars(byteValue), async (vars) => {
          const file = await writeTemp(renderShellEnv(vars));
          const got = await sourceWithShell(
            shell,
            file,
            vars.map((v) => v.name),
            { env },
          );
          for (const { name, value } of vars)
            assert.equal(got.get(name)?.toString("hex"), value.toString("hex"), name);
        }),
        { numRuns: RUNS },
      );
    });
  }
});

/** Splits random variables into those renderDotenv accepts and checks each refusal's error. */
function classifyForDotenv(vars: readonly EnvVar[]): { accepted: EnvVar[]; refused: number } {
  const accepted: EnvVar[] = [];
  for (const v of vars) {
    const error = dotenvVerdict(v);
    if (error === undefined) {
      accepted.push(v);
      continue;
    }
    assert.equal(error.variable, v.name);
    if (v.value.length >= 8) {
      for (const encoding of ["utf8", "latin1"] as const) {
        assert.ok(
          !error.message.includes(v.value.toString(encoding)),
          "the message must not contain the value",
        );
      }
    }
  }
  if (accepted.length < vars.length) assert.throws(() => renderDotenv(vars), EncodeError);
  return { accepted, refused: vars.length - accepted.length };
}

describe("dotenv format: exact in python-dotenv and Node, or refused", () => {
  test("every value is refused with EncodeError or read back exactly by python-dotenv and util.parseEnv", async (t) => {
    let accepted = 0;
    let refused = 0;
    await fc.assert(
      fc.asyncProperty(namedVars(anyValue), async (vars) => {
        const verdict = classifyForDotenv(vars);
        accepted += verdict.accepted.length;
        refused += verdict.refused;
        const content = renderDotenv(verdict.accepted);
        const expected = new Map(verdict.accepted.map((v) => [v.name, v.value.toString("utf8")]));
        assert.deepEqual(
          new Map(Object.entries(parseEnv(content.toString("utf8")))),
          expected,
          "util.parseEnv",
        );
        assert.deepEqual(await python.parse(await writeTemp(content)), expected, "python-dotenv");
      }),
      { numRuns: 10 * RUNS },
    );
    t.diagnostic(`${accepted} values accepted, ${refused} refused`);
    assert.ok(accepted > 10 * RUNS && refused > 10 * RUNS, "the generator should exercise both outcomes");
  });

  test("node --env-file reads the accepted values exactly", async () => {
    await fc.assert(
      fc.asyncProperty(namedVars(anyValue), async (vars) => {
        const { accepted } = classifyForDotenv(vars);
        const file = await writeTemp(renderDotenv(accepted));
        const expected = new Map(accepted.map((v) => [v.name, v.value.toString("utf8")]));
        assert.deepEqual(await parseWithNodeEnvFile(file), expected);
      }),
      { numRuns: RUNS },
    );
  });

  test("every refused UTF-8 value is really mangled by some parser in every quoting", async (t) => {
    // Each candidate line sits in a file as it would in real output: another variable follows, and
    // its value may hold any quote character (Node looks for a closing quote across lines).
    const after = 'NEXT=it\'s "`quoted`"\n';
    const forms: Array<[string, (v: string) => string]> = [
      ["single", (v) => `V='${v}'\n${after}`],
      ["double", (v) => `V="${v}"\n${after}`],
      ["bare", (v) => `V=${v}\n${after}`],
    ];
    let checked = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(textValue, { minLength: 1, maxLength: MAX_VARS }), async (values) => {
        const refused = values.filter((value) => dotenvVerdict({ name: "V", value }) !== undefined);
        const texts = refused
          .filter((value) => isUtf8(value) && !value.includes(0))
          .map((v) => v.toString("utf8"));
        const candidates = texts.flatMap((text) =>
          forms.map(([form, write]) => ({ text, form, content: write(text) })),
        );
        const files = await Promise.all(candidates.map((c) => writeTemp(c.content)));
        const parsed = await Promise.all(files.map((file) => python.parse(file)));
        candidates.forEach((c, i) => {
          const node = parseEnv(c.content).V;
          const py = parsed[i]?.get("V");
          assert.ok(
            node !== c.text || py !== c.text,
            `${c.form} quoting carries ${JSON.stringify(c.text)} exactly in both parsers, yet it was refused`,
          );
        });
        checked += texts.length;
      }),
      { numRuns: 10 * RUNS },
    );
    t.diagnostic(`${checked} refusals confirmed necessary`);
  });
});

describe("json format", () => {
  test("UTF-8 values come back exactly from JSON.parse, others are refused", () => {
    fc.assert(
      fc.property(namedVars(anyValue), (vars) => {
        if (!vars.every((v) => isUtf8(v.value))) {
          assert.throws(() => renderJson(vars), EncodeError);
          return;
        }
        const parsed = JSON.parse(renderJson(vars).toString("utf8")) as Record<string, string>;
        assert.deepEqual(
          Object.entries(parsed),
          vars.map((v) => [v.name, v.value.toString("utf8")]),
        );
      }),
      { numRuns: 500 },
    );
  });
});
