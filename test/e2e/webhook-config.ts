// The chart's MutatingWebhookConfiguration, as helm renders it, pointed at a webhook running as a
// local process: the e2e tests register exactly what users install, with only clientConfig changed
// (a loopback `url` + `caBundle` instead of the in-cluster Service).
import { parseAllDocuments } from "yaml";
import { helmTemplate } from "../helpers/tools.ts";

export interface RenderWebhookConfigurationOptions {
  /**
   * Where the API server calls the webhook, e.g. `https://127.0.0.1:34567/mutate`. When the URL has
   * no path (or just `/`), the chart's service path (`/mutate`) is appended.
   */
  url: string;
  /** PEM of the CA that signed the webhook's serving certificate. */
  caBundlePem: string;
  /** Release namespace (default sm-injector); the chart's namespaceSelector excludes it. */
  namespace?: string;
  /** Extra chart values (`--set key=value`), e.g. `{ "webhook.timeoutSeconds": 10 }`. */
  set?: Record<string, string | number | boolean>;
}

interface WebhookEntry {
  name: string;
  clientConfig: { service?: { path?: string }; url?: string; caBundle?: string };
  [k: string]: unknown;
}

export interface MutatingWebhookConfigurationObject {
  apiVersion: "admissionregistration.k8s.io/v1";
  kind: "MutatingWebhookConfiguration";
  metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  webhooks: WebhookEntry[];
}

/**
 * Renders templates/mutatingwebhook.yaml with helm (tls.mode=manual, so nothing is generated) and
 * rewrites every webhook's clientConfig to `{ url, caBundle }`, dropping `service`.
 */
export async function renderWebhookConfiguration(
  opts: RenderWebhookConfigurationOptions,
): Promise<MutatingWebhookConfigurationObject> {
  const yaml = await helmTemplate({
    namespace: opts.namespace ?? "sm-injector",
    set: { "tls.mode": "manual", ...opts.set },
    args: ["--show-only", "templates/mutatingwebhook.yaml"],
  });
  const docs = parseAllDocuments(yaml)
    .map((d) => d.toJS() as unknown)
    .filter((d): d is MutatingWebhookConfigurationObject => {
      return (d as { kind?: string } | null)?.kind === "MutatingWebhookConfiguration";
    });
  if (docs.length !== 1) throw new Error(`expected one MutatingWebhookConfiguration, got ${docs.length}`);
  const config = docs[0] as MutatingWebhookConfigurationObject;
  const caBundle = Buffer.from(opts.caBundlePem).toString("base64");
  for (const webhook of config.webhooks) {
    const url = new URL(opts.url);
    if (url.pathname === "/" || url.pathname === "") url.pathname = webhook.clientConfig.service?.path ?? "/";
    webhook.clientConfig = { url: url.toString(), caBundle };
  }
  return config;
}
