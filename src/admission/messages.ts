// Bounds on what admission sends back: a denial message and warnings quote pod input (annotation
// keys and values, container names), so each is cut to a size the API server, kubectl and the audit
// log can carry, and stripped of control characters a terminal would obey. Pure.

/** Largest denial message, in UTF-8 bytes (the API client, and the audit line, get it whole). */
export const MAX_MESSAGE_BYTES = 4096;
/** Largest single problem line inside a denial message, in characters. */
export const MAX_PROBLEM_CHARS = 1024;
/**
 * kube-apiserver keeps 4096 runes of Warning headers per request (shared with other webhooks and
 * Pod Security) and, past that, cuts each to 256 runes (k8s.io/apiserver endpoints/filters/warning.go,
 * truncateAtTotalRunes, truncateItemRunes); a warning with a control character is dropped
 * (net.NewWarningHeader). 12 × 256 = 3072 leaves room for the others.
 */
export const MAX_WARNINGS = 12;
export const MAX_WARNING_RUNES = 256;

const ELLIPSIS = "…";

/** True for characters a terminal interprets or that reorder text: C0, DEL, C1, bidi controls, line separators. */
function isControl(cp: number): boolean {
  return (
    cp < 0x20 ||
    (cp >= 0x7f && cp <= 0x9f) ||
    cp === 0x200e ||
    cp === 0x200f ||
    (cp >= 0x202a && cp <= 0x202e) ||
    (cp >= 0x2066 && cp <= 0x2069) ||
    cp === 0x2028 ||
    cp === 0x2029 ||
    (cp >= 0xd800 && cp <= 0xdfff) // a lone surrogate (for..of yields pairs whole)
  );
}

/**
 * `text` with control characters written as `\uXXXX`, cut to `maxRunes` code points (the cut marked
 * with …). Costs O(maxRunes) whatever the input's length.
 */
export function cleanText(text: string, maxRunes: number): string {
  let out = "";
  let runes = 0;
  let cut: string | undefined; // the longest prefix that leaves room for the marker
  for (const ch of text) {
    const cp = ch.codePointAt(0) as number;
    const control = isControl(cp);
    const piece = control ? `\\u${cp.toString(16).padStart(4, "0")}` : ch;
    const n = control ? piece.length : 1;
    if (cut === undefined && runes + n > maxRunes - 1) cut = out;
    if (runes + n > maxRunes) return `${cut}${ELLIPSIS}`;
    out += piece;
    runes += n;
  }
  return out;
}

/**
 * `sm-injector: <summary>:` then one `  - problem` line each, within MAX_MESSAGE_BYTES: problems
 * that do not fit are counted in a last line, "and N more problems".
 */
export function denialMessage(summary: string, problems: readonly string[]): string {
  const head = `sm-injector: ${cleanText(summary, MAX_PROBLEM_CHARS)}`;
  if (problems.length === 0) return head;
  const reserve = 64; // for the "and N more" line
  let message = `${head}:`;
  let bytes = Buffer.byteLength(message);
  for (let i = 0; i < problems.length; i++) {
    const line = `\n  - ${cleanText(String(problems[i]), MAX_PROBLEM_CHARS)}`;
    const lineBytes = Buffer.byteLength(line);
    const last = i === problems.length - 1;
    if (bytes + lineBytes > MAX_MESSAGE_BYTES - (last ? 0 : reserve)) {
      const more = problems.length - i;
      return `${message}\n  - and ${more} more ${more === 1 ? "problem" : "problems"}`;
    }
    message += line;
    bytes += lineBytes;
  }
  return message;
}

/** A single-sentence message (no list), bounded and cleaned like the rest. */
export function plainMessage(text: string): string {
  return cleanText(`sm-injector: ${text}`, MAX_MESSAGE_BYTES / 4);
}

/** Warnings as the API server will carry them: each cleaned and cut, at most MAX_WARNINGS (the last counting the rest). */
export function boundWarnings(warnings: readonly string[]): string[] {
  const unique = [...new Set(warnings)];
  const keep = unique.length > MAX_WARNINGS ? MAX_WARNINGS - 1 : unique.length;
  const out = unique.slice(0, keep).map((w) => cleanText(String(w), MAX_WARNING_RUNES));
  if (keep < unique.length) out.push(`and ${unique.length - keep} more warnings`);
  return out;
}

/** Words for an unexpected exception: its type and a short, cleaned start of its message. Never throws. */
export function describeException(e: unknown): string {
  try {
    if (e instanceof Error) return `${cleanText(String(e.name), 40)}: ${cleanText(String(e.message), 200)}`;
    return cleanText(typeof e === "string" ? e : "a value that is not an Error was thrown", 200);
  } catch {
    return "an exception that could not be described";
  }
}
