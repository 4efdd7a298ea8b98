// Pod → mutated Pod → RFC 6902 JSON patch, as the AdmissionReview response carries it.
import fastJsonPatch from "fast-json-patch";

export type JsonPatch = ReturnType<typeof fastJsonPatch.compare>;

export function diffToPatch(before: unknown, after: unknown): JsonPatch {
  return fastJsonPatch.compare(before as object, after as object);
}

/** Applies a patch to a copy (used by tests and `inject --diff` to prove the patch equals the mutation). */
export function applyPatch<T>(doc: T, patch: JsonPatch): T {
  return fastJsonPatch.applyPatch(structuredClone(doc), patch, true, false).newDocument as T;
}
