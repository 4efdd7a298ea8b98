// The top-level members of a JSON object secret, each with the exact text of its value. Pure.
//
// A key selected with `#key` or expanded with env-from must reach the variable as it appears in the
// secret. JSON.parse + JSON.stringify does not do that for anything but strings: 12345678901234567890
// becomes 12345678901234567000, 1e400 becomes null, 1.50 becomes 1.5, and nested objects get their
// keys reordered. JSON.parse's source-text access (a reviver's `context.source`) does not replace
// it: it gives the text of numbers, strings, booleans and null only, not of objects and arrays, and a
// reviver never sees a repeated key's earlier values. So after JSON.parse has validated the whole
// document, a small scanner finds where each top-level member's value starts and ends.
// Strings are still decoded (a variable holds the string, not its JSON text).

export type JsonMember =
  /** A string value, decoded; it may hold a lone surrogate (e.g. "\ud800"), which the caller refuses. */
  | { readonly kind: "string"; readonly value: string }
  /** A number, object, array, true, false or null: its exact text in the secret. */
  | { readonly kind: "raw"; readonly text: string };

export interface JsonObjectMembers {
  /**
   * Each key once, in the order of its first appearance in the text, with its last value, as
   * JSON.parse (whose Object.keys differs only by listing array-index keys such as "1" first).
   */
  readonly members: ReadonlyMap<string, JsonMember>;
  /** Keys that appear more than once in the object. */
  readonly duplicates: ReadonlySet<string>;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

function isJsonSpace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
}

function skipSpace(text: string, i: number): number {
  while (i < text.length && isJsonSpace(text.charCodeAt(i))) i++;
  return i;
}

/** `i` is at an opening quote; returns the index just after the closing one. */
function endOfString(text: string, i: number): number {
  for (let j = i + 1; j < text.length; j++) {
    const c = text.charCodeAt(j);
    if (c === BACKSLASH) j++;
    else if (c === QUOTE) return j + 1;
  }
  return text.length;
}

/** `i` is at `{` or `[`; returns the index just after the bracket that closes it. */
function endOfContainer(text: string, i: number): number {
  let depth = 0;
  for (let j = i; j < text.length; j++) {
    const c = text[j];
    if (c === '"') j = endOfString(text, j) - 1;
    else if (c === "{" || c === "[") depth++;
    else if (c === "}" || c === "]") {
      depth--;
      if (depth === 0) return j + 1;
    }
  }
  return text.length;
}

/** A number, true, false or null ends at the first `,`, `}`, `]` or whitespace. */
function endOfLiteral(text: string, i: number): number {
  let j = i;
  while (j < text.length) {
    const c = text[j] as string;
    if (c === "," || c === "}" || c === "]" || isJsonSpace(c.charCodeAt(0))) break;
    j++;
  }
  return j;
}

function endOfValue(text: string, i: number): number {
  const c = text[i];
  if (c === '"') return endOfString(text, i);
  if (c === "{" || c === "[") return endOfContainer(text, i);
  return endOfLiteral(text, i);
}

/**
 * The members of `text` when it is a JSON object, else undefined (not JSON, or JSON but not an
 * object). JSON.parse validates the whole document first, so the scanner only has to find spans in
 * valid JSON; its result is held to JSON.parse by a property test (test/unit/fetch-json-members.test.ts).
 */
export function parseJsonObjectMembers(text: string): JsonObjectMembers | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return undefined; // the parser's message quotes the text: never shown
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) return undefined;

  const members = new Map<string, JsonMember>();
  const duplicates = new Set<string>();
  let i = skipSpace(text, 0) + 1; // past `{`
  for (;;) {
    i = skipSpace(text, i);
    if (text[i] === "}") break;
    const keyEnd = endOfString(text, i);
    const key = JSON.parse(text.slice(i, keyEnd)) as string;
    i = skipSpace(text, keyEnd) + 1; // past `:`
    i = skipSpace(text, i);
    const valueEnd = endOfValue(text, i);
    const raw = text.slice(i, valueEnd);
    // As JSON.parse: a repeated key keeps its first position and takes the last value.
    if (members.has(key)) duplicates.add(key);
    members.set(
      key,
      raw.charCodeAt(0) === QUOTE
        ? { kind: "string", value: JSON.parse(raw) as string }
        : { kind: "raw", text: raw },
    );
    i = skipSpace(text, valueEnd);
    if (text[i] === ",") i++;
  }
  return { members, duplicates };
}
