// The AdmissionReview v1 answers, built in one place (controller-runtime's response.go: Allowed,
// Denied, PatchResponseFromRaw): the decision's verdicts, the HTTP layer's own refusals and the
// envelope. Whole literals, not `{ ...base, x }`: a spread copy that gains keys is several times
// slower on V8 (see mutate/clone.ts withFields), and one of these is built per admission. Pure.

export interface AdmissionResponse {
  uid: string;
  allowed: boolean;
  status?: { code: number; message: string; reason?: string };
  patchType?: "JSONPatch";
  patch?: string;
  warnings?: string[];
}

/** The `reason` the API server shows beside a status code. */
const STATUS_REASONS = { 400: "BadRequest", 403: "Forbidden", 500: "InternalError" } as const;
export type DenialStatus = keyof typeof STATUS_REASONS;

/** The pod is admitted as it is. */
export function allowedResponse(uid: string, warnings: string[] = []): AdmissionResponse {
  return warnings.length > 0 ? { uid, allowed: true, warnings } : { uid, allowed: true };
}

/** The pod is refused with `message` (already bounded by admission/messages.ts). */
export function deniedResponse(
  uid: string,
  code: DenialStatus,
  message: string,
  warnings: string[] = [],
): AdmissionResponse {
  const status = { code, message, reason: STATUS_REASONS[code] };
  return warnings.length > 0 ? { uid, allowed: false, status, warnings } : { uid, allowed: false, status };
}

/** The pod is admitted with an RFC 6902 patch (`patch`: its JSON text). */
export function patchedResponse(uid: string, patch: string, warnings: string[] = []): AdmissionResponse {
  const encoded = Buffer.from(patch).toString("base64");
  return warnings.length > 0
    ? { uid, allowed: true, patchType: "JSONPatch", patch: encoded, warnings }
    : { uid, allowed: true, patchType: "JSONPatch", patch: encoded };
}

/** The AdmissionReview envelope around a response. */
export function reviewResponse(response: AdmissionResponse): {
  apiVersion: string;
  kind: string;
  response: AdmissionResponse;
} {
  return { apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview", response };
}
