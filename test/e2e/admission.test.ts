// The webhook as the real kube-apiserver calls it: pods created through the API and checked as the
// API server STORED them (after its own defaulting, validation and Pod Security admission), with the
// registered configuration's selectors, failure policy, dry-run and reinvocation.
import assert from "node:assert/strict";
import https from "node:https";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import type { V1Container, V1Pod, V1PodTemplateSpec } from "@kubernetes/client-node";
import { generateCA, generateCert } from "./harness/certs.ts";
import { createDeploymentPod } from "./harness/controllers.ts";
import { apiError, INIT_CONTAINER, INIT_IMAGE, INJECT_LABEL, useE2E, WEBHOOK_NAME } from "./harness/env.ts";
import { getFreePort } from "./harness/ports.ts";

const NS = "erp";
const ROLE_ARN = "arn:aws:iam::123456789012:role/erp-api";
const ENV_FILE = "/run/sm-injector/env";

/** sm_injector_admission_requests_total{result="injected"}. */
const injected = () => env().webhook.metric("sm_injector_admission_requests_total", { result: "injected" });
const initOf = (pod: V1Pod) => pod.spec?.initContainers?.filter((c) => c.name === INIT_CONTAINER) ?? [];
const envOf = (c: V1Container | undefined, name: string) => c?.env?.find((e) => e.name === name);

/** A restricted-compliant pod template for the ERP API, opted in, with secrets and a wrapped command. */
function apiTemplate(): V1PodTemplateSpec {
  return {
    metadata: {
      labels: { app: "erp-api", [INJECT_LABEL]: "true" },
      annotations: {
        "sm-injector.io/env.DATABASE_URL": "erp/production/database#DATABASE_URL",
        "sm-injector.io/env.JWT_SECRET_KEY": "erp/staging/jwt/secret_key",
        "sm-injector.io/env-from.s3": "erp/production/aws/s3_app_user_credentials?prefix=S3_",
        "sm-injector.io/wrap-command": "true",
      },
    },
    spec: {
      serviceAccountName: "erp-api",
      securityContext: {
        runAsNonRoot: true,
        runAsUser: 1000,
        runAsGroup: 1000,
        seccompProfile: { type: "RuntimeDefault" },
      },
      containers: [
        {
          name: "api",
          image: "registry.example.com/erp/api:1.0.0",
          command: ["/app/server", "--port", "8080"],
          env: [{ name: "AWS_REGION", value: "us-east-1" }],
          securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } },
        },
      ],
    },
  };
}

const env = useE2E(
  { before, after },
  {
    setup: (e) =>
      e.createNamespace(NS, {
        serviceAccounts: { "erp-api": { "eks.amazonaws.com/role-arn": ROLE_ARN }, plain: {} },
      }),
  },
);

describe("an opted-in pod as the API server stores it", () => {
  test("a Deployment's pod (created from its template, as the ReplicaSet controller would) is mutated", async (t) => {
    const { apps, core, webhookConfiguration } = env();
    t.diagnostic(`webhook configuration: ${webhookConfiguration.source} (${webhookConfiguration.name})`);
    const deployment = await apps.createNamespacedDeployment({
      namespace: NS,
      body: {
        metadata: { name: "erp-api" },
        spec: { replicas: 1, selector: { matchLabels: { app: "erp-api" } }, template: apiTemplate() },
      },
    });
    // Only pods are mutated: the stored Deployment's template is as written.
    assert.equal(deployment.spec?.template.spec?.initContainers, undefined);
    assert.equal(deployment.spec?.template.metadata?.annotations?.["sm-injector.io/status"], undefined);

    // What the deployment controller then the ReplicaSet controller would create.
    const hash = "7c9f8d6b5";
    const { pod } = await createDeploymentPod(apps, core, deployment, hash);
    const name = pod.metadata?.name as string;
    assert.match(name, new RegExp(`^erp-api-${hash}-[a-z0-9]{5}$`));

    assert.equal(pod.metadata?.annotations?.["sm-injector.io/status"], "injected");

    const inits = initOf(pod);
    assert.equal(inits.length, 1, "exactly one init container");
    const init = inits[0] as V1Container;
    assert.equal(
      pod.spec?.initContainers?.at(-1)?.name,
      INIT_CONTAINER,
      "runs after the other init containers",
    );
    assert.equal(init.image, INIT_IMAGE);
    assert.deepEqual(init.args, ["fetch"]);
    const spec = JSON.parse(envOf(init, "SM_INJECTOR_SPEC")?.value ?? "{}") as {
      outputDir: string;
      fileName: string;
      format: string;
      entries: Array<{ source: { secretId: string; region: string } }>;
    };
    assert.equal(spec.outputDir, "/run/sm-injector");
    assert.equal(spec.fileName, "env");
    assert.equal(spec.format, "shell");
    assert.deepEqual(spec.entries.map((e) => e.source.secretId).sort(), [
      "erp/production/aws/s3_app_user_credentials",
      "erp/production/database",
      "erp/staging/jwt/secret_key",
    ]);
    assert.ok(spec.entries.every((e) => e.source.region === "us-east-1"));
    for (const [variable, fieldPath] of [
      ["POD_NAME", "metadata.name"],
      ["POD_NAMESPACE", "metadata.namespace"],
      ["POD_SERVICE_ACCOUNT", "spec.serviceAccountName"],
    ] as const) {
      assert.equal(envOf(init, variable)?.valueFrom?.fieldRef?.fieldPath, fieldPath, variable);
    }
    // IRSA from the ServiceAccount's annotation (no identity webhook ran): a token of its own.
    assert.equal(envOf(init, "AWS_ROLE_ARN")?.value, ROLE_ARN);
    const tokenDir = "/var/run/secrets/sm-injector/eks.amazonaws.com/serviceaccount";
    assert.equal(envOf(init, "AWS_WEB_IDENTITY_TOKEN_FILE")?.value, `${tokenDir}/token`);
    assert.equal(envOf(init, "AWS_REGION")?.value, "us-east-1");
    assert.equal(envOf(init, "AWS_EC2_METADATA_DISABLED")?.value, "true");
    assert.deepEqual(
      init.volumeMounts
        ?.filter((m) => m.name.startsWith("sm-injector-"))
        .map((m) => [m.name, m.mountPath, !!m.readOnly]),
      [
        ["sm-injector-secrets", "/run/sm-injector", false],
        ["sm-injector-aws-iam-token", tokenDir, true],
      ],
    );

    const secrets = pod.spec?.volumes?.find((v) => v.name === "sm-injector-secrets");
    assert.equal(secrets?.emptyDir?.medium, "Memory");
    const token = pod.spec?.volumes?.find((v) => v.name === "sm-injector-aws-iam-token");
    assert.equal(token?.projected?.sources?.[0]?.serviceAccountToken?.audience, "sts.amazonaws.com");
    assert.equal(token?.projected?.sources?.[0]?.serviceAccountToken?.path, "token");

    const app = pod.spec?.containers[0] as V1Container;
    const mount = app.volumeMounts?.find((m) => m.name === "sm-injector-secrets");
    assert.deepEqual([mount?.mountPath, mount?.readOnly], ["/run/sm-injector", true]);
    assert.equal(
      app.volumeMounts?.some((m) => m.name === "sm-injector-aws-iam-token"),
      false,
      "the app container does not get the init container's token",
    );
    assert.equal(envOf(app, "SM_INJECTOR_ENV_FILE")?.value, ENV_FILE);
    assert.equal(app.command?.[0], "/bin/sh");
    assert.equal(app.command?.[1], "-c");
    assert.match(app.command?.[2] ?? "", /^\. '?\/run\/sm-injector\/env'? && exec "\$0" "\$@"$/);
    assert.deepEqual(app.command?.slice(3), ["/app/server", "--port", "8080"]);
    // The pod's own fields survived, and the API server's ServiceAccount admission still did its part.
    assert.equal(pod.metadata?.ownerReferences?.[0]?.kind, "ReplicaSet");
    assert.equal(pod.metadata?.labels?.["pod-template-hash"], hash);
    assert.ok(pod.spec?.volumes?.some((v) => v.name.startsWith("kube-api-access-")));
  });

  test("a pod without the label is never sent to the webhook", async () => {
    const { core } = env();
    const before = await env().admissionRequests();
    const pod = await core.createNamespacedPod({
      namespace: NS,
      body: {
        metadata: {
          name: "not-opted-in",
          // Annotations alone do not opt in: the label routes pods to the webhook.
          annotations: { "sm-injector.io/env.JWT_SECRET_KEY": "erp/staging/jwt/secret_key" },
        },
        spec: { containers: [{ name: "main", image: "busybox", command: ["sleep", "1"] }] },
      },
    });
    assert.equal(pod.spec?.initContainers, undefined);
    const stored = await core.readNamespacedPod({ namespace: NS, name: "not-opted-in" });
    assert.equal(initOf(stored).length, 0);
    assert.equal(stored.metadata?.annotations?.["sm-injector.io/status"], undefined);
    assert.equal(await env().admissionRequests(), before, "the webhook's request counter did not move");

    // An opted-in pod does move it (so the check above can fail).
    await core.createNamespacedPod({
      namespace: NS,
      dryRun: "All",
      body: { ...apiTemplate(), metadata: { ...apiTemplate().metadata, name: "counted" } },
    });
    assert.ok((await env().admissionRequests()) > before);
  });

  test("a labelled pod in kube-system is excluded by the namespaceSelector", async () => {
    const { core } = env();
    await core.createNamespacedServiceAccount({
      namespace: "kube-system",
      body: { metadata: { name: "default" } },
    });
    const before = await env().admissionRequests();
    const pod = await core.createNamespacedPod({
      namespace: "kube-system",
      body: {
        metadata: {
          name: "system-pod",
          labels: { [INJECT_LABEL]: "true" },
          annotations: { "sm-injector.io/env.X": "erp/production/x" },
        },
        spec: { containers: [{ name: "main", image: "busybox", command: ["sleep", "1"] }] },
      },
    });
    assert.equal(pod.spec?.initContainers, undefined);
    assert.equal(await env().admissionRequests(), before);
  });

  test("dry-run create returns the mutated pod and stores nothing", async () => {
    const { core } = env();
    const before = await injected();
    const injections = await env().webhook.metric("sm_injector_injections_total");
    const pod = await core.createNamespacedPod({
      namespace: NS,
      dryRun: "All",
      body: { ...apiTemplate(), metadata: { ...apiTemplate().metadata, name: "dry-run" } },
    });
    assert.equal(pod.metadata?.annotations?.["sm-injector.io/status"], "injected");
    assert.equal(initOf(pod).length, 1);
    assert.ok(pod.spec?.volumes?.some((v) => v.name === "sm-injector-secrets"));
    assert.equal(await injected(), before + 1, "the webhook was called (with dryRun)");
    await assert.rejects(core.readNamespacedPod({ namespace: NS, name: "dry-run" }), (e: unknown) => {
      assert.equal(apiError(e).code, 404);
      return true;
    });
    const audit = env()
      .webhookLogEntries()
      .filter((l) => l.msg === "admission" && l.pod === "dry-run");
    assert.ok(audit.length > 0 && audit.every((l) => l.dryRun === true), "the webhook knew it was a dry run");
    assert.equal(
      await env().webhook.metric("sm_injector_injections_total"),
      injections,
      "a dry run is not counted as an injection",
    );
  });
});

/**
 * A stand-in for EKS's pod identity webhook: adds AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE and a
 * projected token to the app containers (only once). Its configuration sorts after ours, so the API
 * server calls it second, then reinvokes ours (reinvocationPolicy IfNeeded).
 */
async function startFakePodIdentityWebhook(dir: string) {
  const ca = await generateCA(dir, "fake-eks-ca");
  const serving = await generateCert(dir, ca, { cn: "fake-eks", sans: ["127.0.0.1"] });
  let calls = 0;
  const server = https.createServer({ cert: serving.certPem, key: serving.keyPem }, (req, res) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (c: string) => {
      body += c;
    });
    req.on("end", () => {
      calls++;
      const review = JSON.parse(body) as { request: { uid: string; object: V1Pod } };
      const pod = review.request.object;
      const patch: object[] = [];
      const tokenDir = "/var/run/secrets/eks.amazonaws.com/serviceaccount";
      pod.spec?.containers.forEach((c, i) => {
        if (c.env?.some((e) => e.name === "AWS_ROLE_ARN")) return;
        const env = [
          { name: "AWS_STS_REGIONAL_ENDPOINTS", value: "regional" },
          { name: "AWS_ROLE_ARN", value: "arn:aws:iam::123456789012:role/from-eks-webhook" },
          { name: "AWS_WEB_IDENTITY_TOKEN_FILE", value: `${tokenDir}/token` },
        ];
        const mount = { name: "aws-iam-token", mountPath: tokenDir, readOnly: true };
        if (c.env)
          for (const e of env) patch.push({ op: "add", path: `/spec/containers/${i}/env/-`, value: e });
        else patch.push({ op: "add", path: `/spec/containers/${i}/env`, value: env });
        if (c.volumeMounts)
          patch.push({ op: "add", path: `/spec/containers/${i}/volumeMounts/-`, value: mount });
        else patch.push({ op: "add", path: `/spec/containers/${i}/volumeMounts`, value: [mount] });
      });
      if (patch.length > 0 && !pod.spec?.volumes?.some((v) => v.name === "aws-iam-token")) {
        const volume = {
          name: "aws-iam-token",
          projected: {
            sources: [
              {
                serviceAccountToken: {
                  audience: "sts.amazonaws.com",
                  expirationSeconds: 86400,
                  path: "token",
                },
              },
            ],
          },
        };
        if (pod.spec?.volumes) patch.push({ op: "add", path: "/spec/volumes/-", value: volume });
        else patch.push({ op: "add", path: "/spec/volumes", value: [volume] });
      }
      res.setHeader("content-type", "application/json");
      res.end(
        JSON.stringify({
          apiVersion: "admission.k8s.io/v1",
          kind: "AdmissionReview",
          response: {
            uid: review.request.uid,
            allowed: true,
            ...(patch.length > 0 && {
              patchType: "JSONPatch",
              patch: Buffer.from(JSON.stringify(patch)).toString("base64"),
            }),
          },
        }),
      );
    });
  });
  const port = await getFreePort();
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  return {
    url: `https://127.0.0.1:${port}/mutate`,
    caPem: ca.certPem,
    calls: () => calls,
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

test("reinvocation after a later identity webhook: one init container, which picks up the identity", async () => {
  const { admission, core, cp } = env();
  const fake = await startFakePodIdentityWebhook(path.join(cp.workDir, "fake-eks-pki"));
  const configName = "zz-fake-eks-pod-identity";
  assert.ok(
    configName > env().webhookConfiguration.name,
    "the fake webhook's configuration sorts after ours",
  );
  try {
    await admission.createMutatingWebhookConfiguration({
      body: {
        metadata: { name: configName },
        webhooks: [
          {
            name: "pod-identity.fake-eks.example.com",
            admissionReviewVersions: ["v1"],
            sideEffects: "None",
            failurePolicy: "Fail",
            reinvocationPolicy: "IfNeeded",
            clientConfig: { url: fake.url, caBundle: Buffer.from(fake.caPem).toString("base64") },
            rules: [{ operations: ["CREATE"], apiGroups: [""], apiVersions: ["v1"], resources: ["pods"] }],
            objectSelector: { matchLabels: { "fake-eks/identity": "true" } },
          },
        ],
      },
    });
    const body = (name: string): V1Pod => {
      const t = apiTemplate();
      return {
        metadata: { ...t.metadata, name, labels: { ...t.metadata?.labels, "fake-eks/identity": "true" } },
        // No role on this ServiceAccount: only the (later) identity webhook provides one.
        spec: { ...t.spec, serviceAccountName: "plain" } as V1Pod["spec"],
      };
    };
    // Wait until the API server calls the new configuration (informer), with dry runs.
    const deadline = Date.now() + 20_000;
    while (fake.calls() === 0) {
      await core.createNamespacedPod({ namespace: NS, dryRun: "All", body: body("probe") });
      if (fake.calls() > 0) break;
      if (Date.now() > deadline) throw new Error("the fake identity webhook was never called");
      await new Promise((r) => setTimeout(r, 200));
    }

    const fakeBefore = fake.calls();
    const [ours, oursInjected] = [await env().admissionRequests(), await injected()];
    await core.createNamespacedPod({ namespace: NS, body: body("reinvoked") });
    const pod = await core.readNamespacedPod({ namespace: NS, name: "reinvoked" });
    assert.ok(fake.calls() > fakeBefore, "the identity webhook was called");
    // First call: injected. Reinvoked after the identity webhook: changed again (identity synced);
    // without that webhook the reinvocation (after the ServiceAccount plugin) is "unchanged".
    assert.equal(await env().admissionRequests(), ours + 2, "our webhook was called, then reinvoked");
    assert.equal(await injected(), oursInjected + 2, "the reinvocation changed the pod");
    const audit = env()
      .webhookLogEntries()
      .filter((l) => l.msg === "admission" && l.pod === "reinvoked");
    assert.deepEqual(
      audit.map((l) => l.identity),
      ["none", "container"],
      "no identity at first; the app container's (from the identity webhook) on reinvocation",
    );

    const inits = initOf(pod);
    assert.equal(inits.length, 1, "exactly one sm-injector-fetch");
    const init = inits[0] as V1Container;
    assert.equal(pod.spec?.volumes?.filter((v) => v.name === "sm-injector-secrets").length, 1);
    assert.equal(envOf(init, "AWS_ROLE_ARN")?.value, "arn:aws:iam::123456789012:role/from-eks-webhook");
    assert.equal(
      envOf(init, "AWS_WEB_IDENTITY_TOKEN_FILE")?.value,
      "/var/run/secrets/eks.amazonaws.com/serviceaccount/token",
    );
    assert.equal(init.env?.filter((e) => e.name === "AWS_ROLE_ARN").length, 1);
    assert.ok(
      init.volumeMounts?.some(
        (m) =>
          m.name === "aws-iam-token" && m.mountPath === "/var/run/secrets/eks.amazonaws.com/serviceaccount",
      ),
      "the init container mounts the identity webhook's token",
    );
    assert.equal(
      pod.spec?.volumes?.some((v) => v.name === "sm-injector-aws-iam-token"),
      false,
      "no token of its own when the pod has one",
    );
    const app = pod.spec?.containers[0] as V1Container;
    assert.equal(app.volumeMounts?.filter((m) => m.name === "sm-injector-secrets").length, 1);
    assert.equal(app.env?.filter((e) => e.name === "SM_INJECTOR_ENV_FILE").length, 1);
    assert.equal(app.command?.filter((a) => a === "/bin/sh").length, 1, "the command is wrapped once");
  } finally {
    await admission.deleteMutatingWebhookConfiguration({ name: configName }).catch(() => {});
    await fake.stop();
  }
});

test('a namespace enforcing Pod Security "restricted" admits the mutated pod', async () => {
  const { core } = env();
  const ns = "erp-restricted";
  await env().createNamespace(ns, {
    labels: {
      "pod-security.kubernetes.io/enforce": "restricted",
      "pod-security.kubernetes.io/enforce-version": "latest",
    },
    serviceAccounts: { "erp-api": { "eks.amazonaws.com/role-arn": ROLE_ARN } },
  });
  const t = apiTemplate();
  await core.createNamespacedPod({
    namespace: ns,
    body: { metadata: { ...t.metadata, name: "restricted" }, spec: t.spec },
  });
  const pod = await core.readNamespacedPod({ namespace: ns, name: "restricted" });
  assert.equal(initOf(pod).length, 1);
  assert.ok(
    pod.spec?.volumes?.some((v) => v.name === "sm-injector-aws-iam-token"),
    "with its projected token",
  );

  // The namespace does enforce: the same app without its hardening is refused.
  const weak = apiTemplate();
  const c = weak.spec?.containers[0] as V1Container;
  delete c.securityContext;
  await assert.rejects(
    core.createNamespacedPod({
      namespace: ns,
      body: { metadata: { ...weak.metadata, name: "weak" }, spec: weak.spec },
    }),
    (e: unknown) => {
      const { code, message } = apiError(e);
      assert.equal(code, 403);
      assert.match(message, /violates PodSecurity "restricted:latest"/);
      assert.doesNotMatch(
        message,
        /sm-injector-fetch/,
        "only the app container is blamed, not the injected one",
      );
      return true;
    },
  );
});

describe("refused at admission", () => {
  test("invalid annotations: the webhook's message, naming each annotation, reaches the API client", async () => {
    const { core } = env();
    const t = apiTemplate();
    const before = await env().admissionRequests();
    await assert.rejects(
      core.createNamespacedPod({
        namespace: NS,
        body: {
          metadata: {
            name: "invalid",
            labels: t.metadata?.labels,
            annotations: {
              "sm-injector.io/env.1BAD": "erp/production/database#DATABASE_URL",
              "sm-injector.io/formt": "dotenv",
              "sm-injector.io/output-dir": "/etc/app",
            },
          },
          spec: t.spec,
        },
      }),
      (e: unknown) => {
        const { code, message } = apiError(e);
        assert.equal(code, 400);
        assert.ok(
          message.startsWith(`admission webhook "${WEBHOOK_NAME}" denied the request: sm-injector: `),
          message,
        );
        assert.match(message, /sm-injector\.io\/env\.1BAD: .*not a valid environment variable name/);
        assert.match(message, /sm-injector\.io\/formt: .*Did you mean sm-injector\.io\/format\?/);
        assert.match(message, /sm-injector\.io\/output-dir: .*\/etc\/app.*outside the allowed roots/);
        return true;
      },
    );
    assert.equal(await env().admissionRequests(), before + 1);
    await assert.rejects(core.readNamespacedPod({ namespace: NS, name: "invalid" }), /404|not found/i);
  });

  test("a secret outside the namespace's policy is refused with 403 naming it", async () => {
    const { core } = env();
    const ns = "erp-policy";
    await env().createNamespace(ns, {
      annotations: { "sm-injector.io/allowed-secrets": "erp/production/*" },
      serviceAccounts: { "erp-api": { "eks.amazonaws.com/role-arn": ROLE_ARN } },
    });
    const t = apiTemplate();
    await assert.rejects(
      core.createNamespacedPod({
        namespace: ns,
        body: { metadata: { ...t.metadata, name: "policy" }, spec: t.spec },
      }),
      (e: unknown) => {
        const { code, message } = apiError(e);
        assert.equal(code, 403);
        assert.match(
          message,
          new RegExp(`^admission webhook "${WEBHOOK_NAME}" denied the request: sm-injector: `),
        );
        assert.match(message, /erp\/staging\/jwt\/secret_key/);
        return true;
      },
    );
  });
});

// Last: stops the webhook of this file.
test("the webhook down: opted-in pods are refused (fail closed), other pods are admitted", async () => {
  const { core, webhook } = env();
  await env().stopWebhook();
  assert.equal(webhook.process.isRunning(), false);
  const t = apiTemplate();
  await assert.rejects(
    core.createNamespacedPod({
      namespace: NS,
      body: { metadata: { ...t.metadata, name: "fail-closed" }, spec: t.spec },
    }),
    (e: unknown) => {
      const { code, message } = apiError(e);
      assert.equal(code, 500);
      assert.match(message, new RegExp(`failed calling webhook "${WEBHOOK_NAME.replace(/\./g, "\\.")}"`));
      assert.match(message, /connection refused/);
      return true;
    },
  );
  await assert.rejects(core.readNamespacedPod({ namespace: NS, name: "fail-closed" }), /404|not found/i);

  const admitted = await core.createNamespacedPod({
    namespace: NS,
    body: {
      metadata: { name: "unaffected", labels: { app: "other" } },
      spec: { containers: [{ name: "main", image: "busybox", command: ["sleep", "1"] }] },
    },
  });
  assert.equal(admitted.metadata?.name, "unaffected");
});
