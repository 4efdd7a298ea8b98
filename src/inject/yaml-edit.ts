// A parsed YAML document brought to a new value with the fewest node changes, so that what did not
// change keeps its formatting (flow `{ }` maps, quoting, comments): `inject --diff` compares the
// document with itself edited, not with a re-rendering of it. Pure.
import { isDeepStrictEqual } from "node:util";
import { type Document, isMap, isNode, isScalar, isSeq, type Node } from "yaml";

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

function jsOf(node: unknown, doc: Document): unknown {
  return isNode(node) ? node.toJS(doc) : node;
}

/** Edits `doc` in place so that its value is `value`. */
export function editDocument(doc: Document, value: unknown): void {
  doc.contents = edit(doc, doc.contents, value) as Document["contents"];
}

function edit(doc: Document, node: unknown, value: unknown): unknown {
  if (isMap(node) && isPlainObject(value)) return editMap(doc, node, value);
  if (isSeq(node) && Array.isArray(value)) return editSeq(doc, node, value);
  if (isScalar(node) && isDeepStrictEqual(node.toJS(doc), value)) return node;
  return doc.createNode(value);
}

function editMap(
  doc: Document,
  node: Node & { items: Array<{ key: unknown; value: unknown }> },
  value: Record<string, unknown>,
) {
  const keyOf = (k: unknown) => String(jsOf(k, doc));
  node.items = node.items.filter((pair) => Object.hasOwn(value, keyOf(pair.key)));
  for (const [k, v] of Object.entries(value)) {
    const pair = node.items.find((p) => keyOf(p.key) === k);
    if (pair) pair.value = edit(doc, pair.value, v);
    else node.items.push(doc.createPair(k, v));
  }
  return node;
}

/** The common head and tail stay; the middle is edited item by item, or replaced when its length changed. */
function editSeq(doc: Document, node: Node & { items: unknown[] }, value: unknown[]) {
  const old = node.items.map((i) => jsOf(i, doc));
  let head = 0;
  while (head < old.length && head < value.length && isDeepStrictEqual(old[head], value[head])) head++;
  let tail = 0;
  while (
    tail < old.length - head &&
    tail < value.length - head &&
    isDeepStrictEqual(old[old.length - 1 - tail], value[value.length - 1 - tail])
  )
    tail++;
  const oldMiddle = old.length - head - tail;
  const newMiddle = value.length - head - tail;
  if (oldMiddle === newMiddle) {
    for (let i = head; i < head + oldMiddle; i++) node.items[i] = edit(doc, node.items[i], value[i]);
  } else {
    node.items.splice(head, oldMiddle, ...value.slice(head, head + newMiddle).map((v) => doc.createNode(v)));
  }
  return node;
}
