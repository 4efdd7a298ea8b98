// One table per command: each flag once, with its environment variable, its type and bounds (a zod
// schema whose .default() is the flag's default), and its help line. The parser, the error messages
// (naming the flag and the variable) and the --help text are all derived from that table, so adding
// a flag is adding one entry.
import { parseArgs } from "node:util";
import { z } from "zod";

/** How the command-line (or environment) text becomes the schema's input. */
export type FlagInput = "text" | "int" | "bool" | "list";

export interface FlagSpec<S extends z.ZodType = z.ZodType> {
  /** The variable that sets the flag when the command line does not (flags win). */
  env?: string;
  input: FlagInput;
  /** The value's type and bounds; `.default(x)` is the default, `.optional()` means none. */
  schema: S;
  help: string;
  /** The value's placeholder in --help (default by input: N, true|false, LIST, VALUE). */
  value?: string;
  /** One-letter alias (`-f`). */
  short?: string;
  /** Said instead of "is required" when a flag without a default is missing. */
  required?: string;
}

/** A whole number within bounds: the schema of most numeric flags. */
export const wholeNumber = (min: number, max: number) => z.number().int().min(min).max(max);

/** Declares one flag (keeps the schema's type for the parsed values). */
export function flag<S extends z.ZodType>(spec: FlagSpec<S>): FlagSpec<S> {
  return spec;
}

export type FlagTable = Record<string, FlagSpec>;

type Camel<S extends string> = S extends `${infer H}-${infer T}` ? `${H}${Capitalize<Camel<T>>}` : S;

/** The parsed values of a table, keyed by the flag's name in camelCase (`--run-as-user` → runAsUser). */
export type FlagValues<T extends FlagTable> = {
  [K in keyof T as Camel<K & string>]: z.output<T[K]["schema"]>;
};

export const camelCase = (name: string) => name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/** `--flag (VARIABLE)`: how every message names a flag. */
export function flagName(name: string, spec: FlagSpec): string {
  return spec.env ? `--${name} (${spec.env})` : `--${name}`;
}

type Converted = { ok: true; value: unknown } | { ok: false; message: string };

function convert(input: FlagInput, raw: string): Converted {
  switch (input) {
    case "text":
      return { ok: true, value: raw };
    case "int": {
      const n = Number(raw.trim());
      if (raw.trim() === "" || !Number.isInteger(n)) return { ok: false, message: "must be a whole number" };
      return { ok: true, value: n };
    }
    case "bool":
      if (raw === "true" || raw === "false") return { ok: true, value: raw === "true" };
      return { ok: false, message: "must be true or false" };
    case "list":
      return {
        ok: true,
        value: raw
          .split(",")
          .map((s) => s.trim())
          .filter(Boolean),
      };
  }
}

/**
 * `--switch` alone means `--switch=true`, and `--switch WORD` takes the word as its value (so that
 * `--switch maybe` is named as a bad value), for bool flags: node's parseArgs knows only strings
 * that always take a value.
 */
function normaliseSwitches(argv: readonly string[], table: FlagTable): string[] {
  const switches = new Set(
    Object.entries(table).flatMap(([name, s]) =>
      s.input === "bool" ? [`--${name}`, ...(s.short ? [`-${s.short}`] : [])] : [],
    ),
  );
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (!switches.has(a)) {
      out.push(a);
      continue;
    }
    const next = argv[i + 1];
    if (next !== undefined && !next.startsWith("-")) {
      out.push(`${a}=${next}`);
      i++;
    } else out.push(`${a}=true`);
  }
  return out;
}

/** What each flag was given as text (command line first, then its variable), and unknown-flag problems. */
function rawValues(
  table: FlagTable,
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
): { raw: Record<string, string>; help: boolean; problems: string[] } {
  const options: Record<string, { type: "string" | "boolean"; short?: string }> = {
    help: { type: "boolean", short: "h" },
  };
  for (const [name, spec] of Object.entries(table))
    options[name] = { type: "string", ...(spec.short && { short: spec.short }) };
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({
      args: normaliseSwitches(argv, table),
      options,
      strict: true,
      allowPositionals: false,
    }).values as typeof values;
  } catch (e) {
    return { raw: {}, help: false, problems: [(e as Error).message.split(". ")[0] ?? String(e)] };
  }
  const raw: Record<string, string> = {};
  for (const [name, spec] of Object.entries(table)) {
    const v = values[name] ?? (spec.env ? env[spec.env] : undefined);
    // An empty variable (a chart value left blank) counts as not set.
    if (typeof v === "string" && v !== "") raw[name] = v;
  }
  return { raw, help: values.help === true, problems: [] };
}

export interface ParsedFlags<T extends FlagTable> {
  values: FlagValues<T>;
  /** `--help` or `-h` was given. */
  help: boolean;
  /** One line per bad flag, each naming the flag and its variable; empty when all are valid. */
  problems: string[];
}

/** Parses argv, then the variables, against the table; every problem is collected, none thrown. */
export function parseFlags<T extends FlagTable>(
  table: T,
  argv: readonly string[],
  env: NodeJS.ProcessEnv = {},
): ParsedFlags<T> {
  const { raw, help, problems } = rawValues(table, argv, env);
  const values: Record<string, unknown> = {};
  // A command line that cannot be read says nothing about the other flags: report only that.
  if (problems.length > 0) return { values: values as FlagValues<T>, help, problems };
  for (const [name, spec] of Object.entries(table)) {
    const text = raw[name];
    const converted: Converted =
      text === undefined ? { ok: true, value: undefined } : convert(spec.input, text);
    const got =
      text === undefined ? "" : ` (got ${JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}…` : text)})`;
    if (!converted.ok) {
      problems.push(`${flagName(name, spec)}: ${converted.message}${got}`);
      continue;
    }
    const parsed = spec.schema.safeParse(converted.value);
    if (parsed.success) {
      values[camelCase(name)] = parsed.data;
      continue;
    }
    const message =
      text === undefined ? (spec.required ?? "is required") : issueMessage(parsed.error.issues[0]);
    problems.push(`${flagName(name, spec)}: ${message}${got}`);
  }
  return { values: values as FlagValues<T>, help, problems };
}

/** zod's words for a bad value, said the way a flag's are ("must be at least 1"). */
function issueMessage(issue: z.core.$ZodIssue | undefined): string {
  if (issue?.code === "too_small" && issue.origin === "number") return `must be at least ${issue.minimum}`;
  if (issue?.code === "too_big" && issue.origin === "number") return `must be at most ${issue.maximum}`;
  return issue?.message ?? "invalid";
}

/** The values of `table`'s flags out of a larger set (e.g. the injector's part of the webhook's). */
export function pickFlags<T extends FlagTable>(table: T, values: object): FlagValues<T> {
  const all = values as Record<string, unknown>;
  return Object.fromEntries(
    Object.keys(table).map((name) => [camelCase(name), all[camelCase(name)]]),
  ) as FlagValues<T>;
}

/** The same flags, read from the command line only (and named without a variable). */
export function withoutEnv<T extends FlagTable>(table: T): T {
  return Object.fromEntries(Object.entries(table).map(([name, { env: _env, ...spec }]) => [name, spec])) as T;
}

/** Shared by the commands that read the Kubernetes API. */
export const kubeconfigFlag = flag({
  env: "SM_INJECTOR_KUBECONFIG",
  input: "text",
  schema: z.string().min(1).optional(),
  value: "FILE",
  help: "kubeconfig file (default: in-cluster, then KUBECONFIG)",
});

export const logLevelFlag = flag({
  env: "SM_INJECTOR_LOG_LEVEL",
  input: "text",
  schema: z.enum(["trace", "debug", "info", "warn", "error", "fatal"]).default("info"),
  value: "LEVEL",
  help: "trace, debug, info, warn, error or fatal",
});

/** The default as --help shows it: what the schema gives for a flag that is not set. */
function defaultText(spec: FlagSpec): string | undefined {
  const r = spec.schema.safeParse(undefined);
  if (!r.success || r.data === undefined) return undefined;
  return Array.isArray(r.data) ? r.data.join(",") : String(r.data);
}

const PLACEHOLDER: Record<FlagInput, string> = { text: "VALUE", int: "N", bool: "true|false", list: "LIST" };

/** One line per flag: `--name VALUE   VARIABLE   help (default x)`. */
export function flagHelp(table: FlagTable, opts: { env?: boolean } = {}): string {
  const withEnv = opts.env ?? true;
  const rows = Object.entries(table).map(([name, spec]) => {
    const left = `${spec.short ? `-${spec.short}, ` : "    "}--${name} ${spec.value ?? PLACEHOLDER[spec.input]}`;
    const def = defaultText(spec);
    const required = !spec.schema.safeParse(undefined).success;
    const help = `${spec.help}${def !== undefined ? ` (default ${def})` : required ? " (required)" : ""}`;
    return withEnv
      ? `  ${left.padEnd(44)} ${(spec.env ?? "").padEnd(42)} ${help}`
      : `  ${left.padEnd(44)} ${help}`;
  });
  return rows.join("\n");
}

/**
 * A long-running command's flags, or the exit code it ends with: --help printed (0), or every problem
 * on stderr, each line prefixed with the command (2).
 */
export function commandFlags<T extends FlagTable>(
  command: string,
  table: T,
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
  help: () => string,
): FlagValues<T> | number {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(help());
    return 0;
  }
  const { values, problems } = parseFlags(table, argv, env);
  if (problems.length === 0) return values;
  const prefix = `sm-injector ${command}: `;
  process.stderr.write(`${prefix}${problems.join("\n").split("\n").join(`\n${prefix}`)}\n`);
  return 2;
}
