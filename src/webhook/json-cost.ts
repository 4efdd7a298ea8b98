// What parsing a JSON body will cost, counted before JSON.parse. Parsing allocates per value: 3 MB of
// `[{},{},…]` is a million objects and ~100 MB of heap, while an ordinary pod (even one with a
// megabyte annotation, which is one string) has a few thousand values. So bodies are refused by
// their number of containers and elements, counted on the raw bytes without allocating.

/** Objects, arrays and elements one AdmissionReview may contain (a large ordinary pod: ~5,000). */
export const MAX_JSON_VALUES = 100_000;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const OPEN_BRACKET = 0x5b;
const COMMA = 0x2c;

/** End of the string whose opening quote is at `start`: the index of its closing quote, or -1. */
function stringEnd(buf: Buffer, start: number): number {
  let i = start;
  for (;;) {
    i = buf.indexOf(QUOTE, i + 1);
    if (i === -1) return -1;
    let backslashes = 0;
    for (let j = i - 1; buf[j] === BACKSLASH; j--) backslashes++;
    if (backslashes % 2 === 0) return i;
  }
}

/**
 * Counts `{`, `[` and `,` outside strings, stopping past `max`. Returns the count (at most max + 1).
 * Malformed JSON is counted as far as it goes; JSON.parse reports it afterwards.
 */
export function countJsonValues(buf: Buffer, max = MAX_JSON_VALUES): number {
  let count = 0;
  for (let i = 0; i < buf.length; i++) {
    const c = buf[i];
    if (c === QUOTE) {
      const end = stringEnd(buf, i);
      if (end === -1) return count;
      i = end;
    } else if (c === OPEN_BRACE || c === OPEN_BRACKET || c === COMMA) {
      if (++count > max) return count;
    }
  }
  return count;
}

/** The kube-apiserver writes `request.uid` within the first bytes of an AdmissionReview. */
const UID_NEAR_START = /"request"\s*:\s*\{\s*"uid"\s*:\s*"([A-Za-z0-9-]{1,128})"/;

/**
 * The request uid of an AdmissionReview too large to parse, read from its first KiB without parsing,
 * so that the refusal can still be an AdmissionReview answer with sm-injector's message (the API
 * server shows any other answer as "rejected our request for an unknown reason").
 */
export function admissionUidNearStart(buf: Buffer): string | undefined {
  return UID_NEAR_START.exec(buf.subarray(0, 1024).toString("latin1"))?.[1];
}
