// Pod → mutated Pod → RFC 6902 JSON patch, as the AdmissionReview response carries it.

/**
 * The JSON text of fast-json-patch's compare(before, after), for the admission response. The same
 * operations in the same order (its compare, transcribed), without its deep copy of every value it
 * adds — a JSON round trip of the whole init container, the largest single cost of an admission's
 * diff — since the patch is serialized at once and never kept.
 */
export function patchJson(before: unknown, after: unknown): string {
  const ops: Op[] = [];
  generate(before as Node, after as Node, ops, "");
  return JSON.stringify(ops);
}

type Node = Record<string, unknown>;
type Op = { op: string; path: string; value?: unknown };

function escapePathComponent(s: string): string {
  if (s.indexOf("/") === -1 && s.indexOf("~") === -1) return s;
  return s.replace(/~/g, "~0").replace(/\//g, "~1");
}

// fast-json-patch copies values with JSON.parse(JSON.stringify(v)) and turns undefined into null;
// serializing the uncopied value gives the same JSON text.
const asCopied = (v: unknown) => (v === undefined ? null : v);

// An array's keys are its indices, holes included, as fast-json-patch's _objectKeys has them.
const keyCount = (o: Node, keys: string[] | undefined) =>
  keys ? keys.length : (o as unknown as unknown[]).length;
const keyAt = (keys: string[] | undefined, i: number) => (keys ? (keys[i] as string) : `${i}`);

function generate(mirror: Node, objIn: Node, ops: Op[], path: string): void {
  if (objIn === mirror) return;
  const obj = typeof objIn.toJSON === "function" ? (objIn.toJSON as () => Node)() : objIn;
  const objIsArray = Array.isArray(obj);
  const mirrorIsArray = Array.isArray(mirror);
  const oldKeys = mirrorIsArray ? undefined : Object.keys(mirror);
  const oldCount = keyCount(mirror, oldKeys);
  let deleted = false;
  for (let t = oldCount - 1; t >= 0; t--) {
    const key = keyAt(oldKeys, t);
    const oldVal = mirror[key];
    if (Object.hasOwn(obj, key) && !(obj[key] === undefined && oldVal !== undefined && !objIsArray)) {
      const newVal = obj[key];
      if (
        typeof oldVal === "object" &&
        oldVal !== null &&
        typeof newVal === "object" &&
        newVal !== null &&
        Array.isArray(oldVal) === Array.isArray(newVal)
      ) {
        generate(oldVal as Node, newVal as Node, ops, `${path}/${escapePathComponent(key)}`);
      } else if (oldVal !== newVal) {
        ops.push({ op: "replace", path: `${path}/${escapePathComponent(key)}`, value: asCopied(newVal) });
      }
    } else if (mirrorIsArray === objIsArray) {
      ops.push({ op: "remove", path: `${path}/${escapePathComponent(key)}` });
      deleted = true;
    } else {
      ops.push({ op: "replace", path, value: obj });
    }
  }
  const newKeys = objIsArray ? undefined : Object.keys(obj);
  const newCount = keyCount(obj, newKeys);
  if (!deleted && newCount === oldCount) return;
  for (let t = 0; t < newCount; t++) {
    const key = keyAt(newKeys, t);
    if (!Object.hasOwn(mirror, key) && obj[key] !== undefined) {
      ops.push({ op: "add", path: `${path}/${escapePathComponent(key)}`, value: asCopied(obj[key]) });
    }
  }
}
