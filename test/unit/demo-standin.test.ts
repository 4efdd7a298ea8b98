// The demo runs any example on a node that can pull nothing (scripts/demo/standin.ts): what it
// replaces, with what, and what it keeps.
import assert from "node:assert/strict";
import { test } from "node:test";
import type { V1Container, V1PodSpec } from "@kubernetes/client-node";
import { describeSubstitution, substituteImages } from "../../scripts/demo/standin.ts";

const IMAGES = {
  standin: "localhost/sm-injector-standin:0.1.0",
  app: "localhost/sm-injector-example-app:0.1.0",
  available: new Set([
    "localhost/sm-injector-standin:0.1.0",
    "localhost/sm-injector-example-app:0.1.0",
    "local/tool:1",
  ]),
};

function spec(): V1PodSpec {
  return {
    initContainers: [
      {
        name: "istio-proxy",
        image: "docker.io/istio/proxyv2:1.28.1",
        restartPolicy: "Always",
        command: ["/usr/local/bin/pilot-agent"],
        args: ["proxy"],
      },
      {
        name: "migrate",
        image: "registry.example.com/shop/orders:2.7.0",
        command: ["node", "migrate.js"],
        readinessProbe: undefined,
      },
      { name: "local", image: "local/tool:1", command: ["tool"] },
    ],
    containers: [
      {
        name: "api",
        image: "registry.example.com/erp/api:1.4.2",
        command: ["uvicorn", "app.main:app", "--port", "8000"],
      },
      {
        name: "metrics",
        image: "quay.io/prometheus/statsd-exporter:v0.28.0",
        args: ["--web.listen-address=:9102"],
        readinessProbe: { httpGet: { port: 9102, path: "/metrics" } },
      },
    ],
  };
}

test("images the node lacks: the example app for its uvicorn command, the stand-in for the rest, with the original argv", () => {
  const s = spec();
  const swaps = substituteImages(s, IMAGES);
  assert.deepEqual(
    swaps.map((x) => [x.container, x.role, x.by]),
    [
      ["istio-proxy", "native sidecar", "stand-in"],
      ["migrate", "init container", "stand-in"],
      ["api", "container", "example app"],
      ["metrics", "container", "stand-in"],
    ],
  );
  const [sidecar, migrate, local] = s.initContainers ?? [];
  const [api, metrics] = s.containers;
  assert.equal(sidecar?.image, IMAGES.standin);
  assert.deepEqual(sidecar?.command, ["/standin"]);
  assert.deepEqual(sidecar?.args, ["/usr/local/bin/pilot-agent", "proxy"]);
  assert.equal(sidecar?.restartPolicy, "Always", "a native sidecar stays one");
  const env = (c: V1Container | undefined) =>
    Object.fromEntries((c?.env ?? []).map((e) => [e.name, e.value]));
  assert.deepEqual(env(sidecar), {
    SM_INJECTOR_STANDIN_FOR: "docker.io/istio/proxyv2:1.28.1",
    SM_INJECTOR_STANDIN_KEEP_RUNNING: "true",
  });
  // An init container must exit (the next one waits for it).
  assert.deepEqual(env(migrate), { SM_INJECTOR_STANDIN_FOR: "registry.example.com/shop/orders:2.7.0" });
  assert.deepEqual(migrate?.args, ["node", "migrate.js"]);
  assert.equal(local?.image, "local/tool:1", "an image the node holds is kept");
  assert.deepEqual(local?.command, ["tool"]);
  assert.equal(api?.image, IMAGES.app);
  assert.deepEqual(api?.command, ["uvicorn", "app.main:app", "--port", "8000"], "the app's command is kept");
  assert.deepEqual(metrics?.args, ["--web.listen-address=:9102"]);
  assert.equal(metrics?.readinessProbe, undefined, "the real program's probe cannot pass on the stand-in");
  for (const c of [...(s.initContainers ?? []), ...s.containers]) assert.equal(c.imagePullPolicy, "Never");
});

test("the demo says, per container, that the image is not available offline and what runs instead", () => {
  const [sidecar, migrate] = substituteImages(spec(), IMAGES);
  assert.equal(
    describeSubstitution(sidecar as never),
    "native sidecar istio-proxy: image docker.io/istio/proxyv2:1.28.1 is not available offline: running the stand-in, which prints its argv (and keeps running)",
  );
  assert.match(describeSubstitution(migrate as never), /init container migrate: .*prints its argv$/);
});
