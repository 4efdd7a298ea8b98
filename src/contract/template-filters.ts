// The filters a template placeholder may apply to a secret's value: `${REF|urlencode}`. One place
// for their names (the spec schema, the compiler and the README list them from here) and what
// they do (the init container applies them). Pure, and imports nothing: both the webhook and the
// init container's bundle load it.
//
// Kept small on purpose; each is here because a real connection string needs it:
// - urlencode: any part of a URL (user, password, database name, query value). RFC 3986 lets every
//   component hold percent-encoded octets, so one filter that encodes everything but the unreserved
//   characters is right for userinfo, path and query alike, and a `+` becomes %2B, so a form
//   decoder does not read it as a space. No separate userinfo or path filter is needed.
// - libpq: a value in a PostgreSQL key=value connection string (`password=...`), which has its own
//   quoting: single quotes, with `\` escaping `'` and `\`.
// - json: a value inside a JSON document (SPRING_APPLICATION_JSON, a JSON config variable): a
//   string becomes a JSON string literal, quotes included; a JSON number, boolean, null, object or
//   array member keeps its exact JSON text.
// Without a filter the value is inserted as it is (a host name, a port).

/** A value as a placeholder resolves it: its bytes, and whether they are a JSON member's raw text. */
export interface FilterInput {
  readonly bytes: Buffer;
  /** A JSON number, boolean, null, object or array member: `bytes` is its exact JSON text. */
  readonly raw: boolean;
}

export interface TemplateFilterEntry {
  readonly doc: string;
  /** The filtered bytes, or undefined when the value cannot be filtered (json: not UTF-8 text). */
  readonly apply: (value: FilterInput) => Buffer | undefined;
}

const HEX = "0123456789ABCDEF";

function isUnreserved(b: number): boolean {
  return (
    (b >= 0x41 && b <= 0x5a) || // A-Z
    (b >= 0x61 && b <= 0x7a) || // a-z
    (b >= 0x30 && b <= 0x39) || // 0-9
    b === 0x2d || // -
    b === 0x2e || // .
    b === 0x5f || // _
    b === 0x7e // ~
  );
}

/** RFC 3986 percent-encoding of every octet but the unreserved ones (the value's UTF-8 bytes). */
export function urlencode(bytes: Buffer): Buffer {
  const out: number[] = [];
  for (const b of bytes) {
    if (isUnreserved(b)) out.push(b);
    else out.push(0x25, HEX.charCodeAt(b >> 4), HEX.charCodeAt(b & 15));
  }
  return Buffer.from(out);
}

/** A libpq connection-string value, always single-quoted (so an empty value or a space is safe). */
export function libpqQuote(bytes: Buffer): Buffer {
  const out: number[] = [0x27];
  for (const b of bytes) {
    if (b === 0x27 || b === 0x5c) out.push(0x5c);
    out.push(b);
  }
  out.push(0x27);
  return Buffer.from(out);
}

/** The value as JSON text: a string member or a whole secret as a JSON string, a raw member as it is. */
export function jsonText(value: FilterInput): Buffer | undefined {
  if (value.raw) return value.bytes;
  const text = new TextDecoder("utf-8", { fatal: true });
  try {
    return Buffer.from(JSON.stringify(text.decode(value.bytes)), "utf8");
  } catch {
    return undefined;
  }
}

export const TEMPLATE_FILTERS = {
  urlencode: {
    doc: "Percent-encodes every byte of the UTF-8 value except `A-Z a-z 0-9 - . _ ~` (RFC 3986): for a user, password, database name or query value in a URL.",
    apply: (v) => urlencode(v.bytes),
  },
  libpq: {
    // biome-ignore lint/suspicious/noTemplateCurlyInString: ${…} is the template syntax
    doc: "Single-quotes the value for a PostgreSQL key=value connection string, `\\` before `'` and `\\`: `password=${db#password|libpq}`.",
    apply: (v) => libpqQuote(v.bytes),
  },
  json: {
    doc: "The value as JSON: a string becomes a quoted JSON string; a JSON number, boolean, null, object or array keeps its exact text.",
    apply: jsonText,
  },
} as const satisfies Record<string, TemplateFilterEntry>;

export type TemplateFilter = keyof typeof TEMPLATE_FILTERS;

export const TEMPLATE_FILTER_NAMES = Object.keys(TEMPLATE_FILTERS) as [TemplateFilter, ...TemplateFilter[]];

export function isTemplateFilter(name: string): name is TemplateFilter {
  return Object.hasOwn(TEMPLATE_FILTERS, name);
}
