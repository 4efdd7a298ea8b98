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
  for (const k of Object.keys(v)) setOwn(out, k, copy((v as Record<string, unknown>)[k], depth + 1));
  return out;
}

/**
 * `{ ...obj, ...fields }` for plain data, copied key by key. On Node 20's V8 a spread copy that then
 * gains a key its source lacked costs ~3× more, and survives two scavenges, so each admission used
 * to promote hundreds of KB to the old generation and GC pauses under load reached several ms.
 * Same keys, same order, same own `__proto__` data property as the spread.
 */
export function withFields<T extends object>(obj: T, fields: Partial<T>): T {
  const out: Record<string, unknown> = {};
  copyInto(out, obj as Record<string, unknown>);
  copyInto(out, fields as Record<string, unknown>);
  return out as T;
}

function copyInto(out: Record<string, unknown>, from: Record<string, unknown>): void {
  for (const k of Object.keys(from)) setOwn(out, k, from[k]);
}

/** out[k] = v, except that a `__proto__` key becomes an own data property (as JSON.parse, spread and structuredClone make it) rather than setting the prototype. */
function setOwn(out: Record<string, unknown>, k: string, v: unknown): void {
  if (k === "__proto__")
    Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true });
  else out[k] = v;
}
