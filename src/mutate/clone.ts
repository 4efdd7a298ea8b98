// A deep copy of the plain data a pod is made of (objects, arrays, strings, numbers, booleans, null),
// equal to what structuredClone returns for it but several times faster: structuredClone serializes
// through V8's wire format and costs microseconds per call even for a two-field env entry, and the
// admission path copies dozens of them. Anything that is not plain data goes to structuredClone.

const TOO_DEEP = Symbol("too deep");

export function clonePlain<T>(value: T): T {
  try {
    return copy(value, 0) as T;
  } catch (e) {
    // Cycles (and absurd nesting) are structuredClone's to handle.
    if (e === TOO_DEEP) return structuredClone(value);
    throw e;
  }
}

function copy(v: unknown, depth: number): unknown {
  if (typeof v !== "object" || v === null) {
    return typeof v === "function" || typeof v === "symbol" ? structuredClone(v) : v;
  }
  if (depth > 200) throw TOO_DEEP;
  if (Array.isArray(v)) {
    if (Object.getPrototypeOf(v) !== Array.prototype || Object.keys(v).length !== v.length)
      return structuredClone(v);
    const out = new Array(v.length);
    for (let i = 0; i < v.length; i++) out[i] = copy(v[i], depth + 1);
    return out;
  }
  const proto = Object.getPrototypeOf(v);
  if (proto !== Object.prototype && proto !== null) return structuredClone(v);
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(v)) {
    const c = copy((v as Record<string, unknown>)[k], depth + 1);
    if (k === "__proto__")
      Object.defineProperty(out, k, { value: c, enumerable: true, writable: true, configurable: true });
    else out[k] = c;
  }
  return out;
}
