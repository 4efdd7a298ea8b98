// Applying the webhook's JSON patch to the pod it was made for, as the API server does: tests use it
// to prove that the patch turns the pod into exactly the mutated pod. fast-json-patch is the
// reference implementation (the webhook writes its patches by hand, see src/mutate/patch.ts).
import fastJsonPatch from "fast-json-patch";

export type JsonPatch = fastJsonPatch.Operation[];

/** Applies a patch to a copy, validating each operation; throws on a patch that does not apply. */
export function applyPatch<T>(doc: T, patch: JsonPatch): T {
  return fastJsonPatch.applyPatch(structuredClone(doc), patch, true, false).newDocument as T;
}
