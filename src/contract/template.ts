// Templates: one variable composed of literal text and secret values.
//
//   postgresql://${erp/production/rds#username|urlencode}:${erp/production/rds#password|urlencode}@…
//
// A placeholder is `${` REFERENCE [`|` FILTER] `}`, where REFERENCE is the one-line reference syntax
// (name or ARN, `?versionStage=…|versionId=…`, `#json-key`) and FILTER one of TEMPLATE_FILTERS.
// `$$` is a literal `$`; any other `$` is refused, so that `$HOME` is never mistaken for something
// sm-injector expands. The first `|` or `}` ends the reference: a JSON key holding either cannot be
// named in a template (read it with env.<VAR> instead). Pure.
import { formatCount, quote, utf8Bytes } from "./annotations.ts";
import {
  MAX_TEMPLATE_BYTES,
  MAX_TEMPLATE_PLACEHOLDERS,
  type TemplateEntry,
  type TemplateReference,
} from "./fetch-spec.ts";
import { type ParsedReference, parseReference, type Result, versionParam } from "./reference.ts";
import { isTemplateFilter, TEMPLATE_FILTER_NAMES, type TemplateFilter } from "./template-filters.ts";

export interface TemplatePlaceholder {
  readonly ref: ParsedReference;
  readonly filter?: TemplateFilter;
}

/** Literal text and placeholders, in order; adjacent literal text is one string. */
export type ParsedTemplate = Array<string | TemplatePlaceholder>;

/** Placeholders in `text` (`${` not written as `$${`): one linear scan, before anything is parsed. */
export function countPlaceholders(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    if (text.charCodeAt(i) !== 0x24) continue;
    const next = text.charCodeAt(i + 1);
    if (next === 0x24) i++;
    else if (next === 0x7b) n++;
  }
  return n;
}

/** Why a template is over a limit, measured without parsing it; undefined when it is within them. */
export function templateLimitProblem(text: string): string | undefined {
  const bytes = utf8Bytes(text);
  if (bytes > MAX_TEMPLATE_BYTES)
    return `the template is ${formatCount(bytes)} bytes; the limit is ${formatCount(MAX_TEMPLATE_BYTES)}`;
  const n = countPlaceholders(text);
  if (n > MAX_TEMPLATE_PLACEHOLDERS)
    return `the template has ${formatCount(n)} placeholders; the limit is ${MAX_TEMPLATE_PLACEHOLDERS}: compose fewer values in one variable`;
  if (n === 0)
    return `the template has no \${…} placeholder, so it holds no secret; set a constant in the container's env instead (write $$ for a literal $)`;
  return undefined;
}

/** 1-based character position of index `i` (code points, as an editor counts them). */
function position(text: string, i: number): number {
  let n = 1;
  for (let j = 0; j < i; j++) {
    const c = text.charCodeAt(j);
    if (c < 0xd800 || c > 0xdbff || j + 1 >= i) n++;
  }
  return n;
}

const fail = (text: string, i: number, what: string): { ok: false; error: string } => ({
  ok: false,
  error: `at character ${position(text, i)}: ${what}`,
});

/** One placeholder's inside (between `${` and `}`), at index `at` of the template. */
function parsePlaceholder(text: string, inside: string, at: number): Result<TemplatePlaceholder> {
  const bar = inside.indexOf("|");
  const refText = bar === -1 ? inside : inside.slice(0, bar);
  const filter = bar === -1 ? undefined : inside.slice(bar + 1);
  const shown = quote(`\${${inside}}`);
  if (refText.trim() === "") return fail(text, at, `${shown} names no secret`);
  if (filter !== undefined && !isTemplateFilter(filter)) {
    const more = filter.includes("|") ? "; a placeholder takes one filter" : "";
    return fail(
      text,
      at,
      `${shown}: ${quote(filter)} is not a filter (known: ${TEMPLATE_FILTER_NAMES.join(", ")})${more}; a JSON key holding "|" or "}" cannot be named in a template`,
    );
  }
  const ref = parseReference(refText, { expand: false });
  if (!ref.ok) return fail(text, at, `${shown}: ${ref.error}`);
  if (ref.value.optional)
    return fail(
      text,
      at,
      `${shown}: optional references are not allowed in a template: a value composed without one of its parts would be wrong rather than absent (a URL without its password); read an optional secret with env.<VAR> and &optional=true`,
    );
  return { ok: true, value: filter === undefined ? { ref: ref.value } : { ref: ref.value, filter } };
}

/**
 * Parses a template whose size was checked by templateLimitProblem. Problems give the position of
 * the `$` they are about (1-based characters).
 */
export function parseTemplate(text: string): Result<ParsedTemplate> {
  const parts: ParsedTemplate = [];
  let literal = "";
  let i = 0;
  while (i < text.length) {
    const dollar = text.indexOf("$", i);
    if (dollar === -1) {
      literal += text.slice(i);
      break;
    }
    const next = text.charCodeAt(dollar + 1);
    if (next === 0x24) {
      literal += text.slice(i, dollar + 1);
      i = dollar + 2;
      continue;
    }
    literal += text.slice(i, dollar);
    if (next !== 0x7b)
      return fail(text, dollar, `a "$" must start a placeholder \${…}; write $$ for a literal $`);
    const close = text.indexOf("}", dollar + 2);
    if (close === -1) return fail(text, dollar, `"\${" has no closing "}"`);
    const placeholder = parsePlaceholder(text, text.slice(dollar + 2, close), dollar);
    if (!placeholder.ok) return placeholder;
    if (literal !== "") parts.push(literal);
    literal = "";
    parts.push(placeholder.value);
    i = close + 1;
  }
  if (literal !== "") parts.push(literal);
  return { ok: true, value: parts };
}

function placeholderText(ref: TemplateReference): string {
  const s = ref.source;
  return `\${${s.secretId}${versionParam(s)}${ref.key !== undefined ? `#${ref.key}` : ""}${ref.filter !== undefined ? `|${ref.filter}` : ""}}`;
}

/** A compiled template written back in the annotation's syntax (`$` as `$$`), for people to read. */
export function templateText(entry: TemplateEntry): string {
  return entry.parts
    .map((p) => (typeof p === "string" ? p.replaceAll("$", "$$$$") : placeholderText(p)))
    .join("");
}
