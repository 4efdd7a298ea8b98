/**
 * Any example on a node that can pull nothing: each container whose image is not in the node's
 * image store runs an image that is. A container that runs the example FastAPI app's command
 * (`uvicorn app.main:app`) runs the example app image (it reads the env file and proves it, by
 * hashes); any other runs the stand-in image, which prints the argv it was given (the container's
 * own command and args) and, for long-running containers, stays up until SIGTERM. The stand-in has a
 * /bin/sh, so sm-injector's command wrap (/bin/sh sources the env file, then exec) still works.
 */
import type { V1Container, V1PodSpec } from "@kubernetes/client-node";

export interface OfflineImages {
  /** localhost/sm-injector-standin:VERSION (images/standin). */
  standin: string;
  /** localhost/sm-injector-example-app:VERSION (images/app). */
  app: string;
  /** Every image name the node's store holds. */
  available: ReadonlySet<string>;
}

export interface Substitution {
  container: string;
  role: "init container" | "native sidecar" | "container";
  image: string;
  by: "example app" | "stand-in";
}

const isNativeSidecar = (c: V1Container) => c.restartPolicy === "Always";
const runsExampleApp = (c: V1Container) => c.command?.[0] === "uvicorn" && c.command[1] === "app.main:app";

/** The stand-in in place of `c`: its own command and args become the stand-in's argv. */
function standIn(c: V1Container, image: string, keepRunning: boolean): void {
  const argv = [...(c.command ?? []), ...(c.args ?? [])];
  const original = c.image;
  c.image = image;
  c.command = ["/standin"];
  c.args = argv;
  c.env = [
    ...(c.env ?? []),
    { name: "SM_INJECTOR_STANDIN_FOR", value: original },
    ...(keepRunning ? [{ name: "SM_INJECTOR_STANDIN_KEEP_RUNNING", value: "true" }] : []),
  ];
  // Probes of the real program (HTTP ports, its own commands) cannot pass on the stand-in.
  c.readinessProbe = undefined;
  c.livenessProbe = undefined;
  c.startupProbe = undefined;
}

/**
 * Replaces, in place, the images `spec` needs that `images.available` lacks; returns what it replaced.
 * Nothing can be pulled, so every container also gets imagePullPolicy Never (a clear
 * ErrImageNeverPull instead of minutes of back-off).
 */
export function substituteImages(spec: V1PodSpec, images: OfflineImages): Substitution[] {
  const out: Substitution[] = [];
  const visit = (c: V1Container, role: Substitution["role"]) => {
    c.imagePullPolicy = "Never";
    if (c.image && images.available.has(c.image)) return;
    const image = c.image ?? "(none)";
    if (role === "container" && runsExampleApp(c)) {
      c.image = images.app;
      out.push({ container: c.name, role, image, by: "example app" });
      return;
    }
    standIn(c, images.standin, role !== "init container");
    out.push({ container: c.name, role, image, by: "stand-in" });
  };
  for (const c of spec.initContainers ?? [])
    visit(c, isNativeSidecar(c) ? "native sidecar" : "init container");
  for (const c of spec.containers ?? []) visit(c, "container");
  return out;
}

/** What the demo says about one substitution. */
export function describeSubstitution(s: Substitution): string {
  return s.by === "stand-in"
    ? `${s.role} ${s.container}: image ${s.image} is not available offline: running the stand-in, which prints its argv${s.role === "init container" ? "" : " (and keeps running)"}`
    : `${s.role} ${s.container}: image ${s.image} is not available offline: running the example FastAPI app image (images/app), which runs the same uvicorn command`;
}
