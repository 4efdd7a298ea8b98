# syntax=docker/dockerfile:1
# sm-injector: one image for the webhook (`webhook`) and the injected init container (`fetch`).
#
#   docker build -t sm-injector:dev .
#   docker build --target entry-snapshot -t sm-injector:dev .   # fails unless the blob fits (below)
#   bash scripts/build-images.sh sm-injector   # offline: buildah, local base, amd64 + arm64
#
# Two images from one Dockerfile, by target: the default (the last stage, entry-plain) starts the
# CLI plainly; `--target entry-snapshot` starts it from the start-up snapshot dist/fetch.snapshot.blob
# (the injected init container's `fetch` starts ~2x faster). A blob works only with the very node
# binary that built it: any other Node exits 14 before any JavaScript runs, at every pod start. So
# entry-snapshot is for builds whose blob was made by the runtime image's own node binary (scripts/
# build-images.sh checks that and selects it for amd64), and the stage itself refuses, at build time,
# a blob the runtime's node cannot start. (The blob of the build stage below is made by the node:*
# image's node on the build platform, which need not be the runtime's, and never is for another
# arch: a public build stays plain unless asked, and a multi-arch one can only be plain.)
# (A stage chosen by `--target`, not by an ARG in FROM: buildah 1.28 resolves `FROM entry-${ARG}`
# only when the ARG is passed, not from its default.)
#
# Build stage: the whole CLI bundled by esbuild into dist/ (the entry dist/sm-injector.mjs and its
# chunks, one per subcommand so `fetch` loads only its own code) that needs no node_modules at run time. It is plain JavaScript, so it is built once on the build platform even
# for multi-arch images (docker buildx build --platform linux/amd64,linux/arm64).
#
# NODE_MAJOR is the major of the Node.js the tests, CI and the bench run on (NODE_VERSION in
# scripts/versions.env; test/unit/runtime-pin.test.ts fails when they differ).
ARG NODE_MAJOR=26
# The runtime base. scripts/build-images.sh passes a base it makes locally (Debian libraries +
# the official Node.js binary, same layout: no registry needed); everyone else gets distroless.
# (It also replaces the build stage with the bundle built on the host, `--build-context
# build=DIR`, so its offline amd64 and arm64 builds run no npm and no foreign binary.)
ARG RUNTIME_IMAGE=gcr.io/distroless/nodejs${NODE_MAJOR}-debian13:nonroot
FROM --platform=$BUILDPLATFORM node:${NODE_MAJOR}-trixie-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY scripts/build.mjs scripts/pinned-node.mjs scripts/versions.env ./scripts/
COPY src ./src
RUN npm run build && node dist/sm-injector.mjs version

# Runtime: distroless Node.js NODE_MAJOR (Debian 13) - no shell, no package manager, runs as the
# nonroot user (65532). `webhook` and `fetch` need nothing but node and the bundle.
FROM ${RUNTIME_IMAGE} AS runtime
# The bundle (entry, chunks, third-party licence files from esbuild's legalComments) but the start-up
# snapshot, which only entry-snapshot carries. The stage only copies files, so a multi-arch build
# runs nothing of the target architecture. (test/e2e/image.test.ts: /app is exactly dist/.)
COPY --from=build /src/dist/sm-injector.mjs /app/
COPY --from=build /src/dist/chunks/ /app/chunks/
COPY --from=build /src/dist/fetch/ /app/fetch/
ENV NODE_ENV=production \
    PATH=/nodejs/bin:/usr/local/bin:/usr/bin:/bin
USER 65532:65532
WORKDIR /app
LABEL org.opencontainers.image.title="sm-injector" \
      org.opencontainers.image.description="AWS Secrets Manager secrets in Kubernetes pods via a memory-backed env file (admission webhook + init container)" \
      org.opencontainers.image.licenses="Apache-2.0"
# The chart's pods pass the subcommand as args: ["webhook", ...] and the injected init container
# ["fetch"], so the ENTRYPOINT is how `fetch` starts; the chart's long-running pods (webhook,
# rotation) give a plain `command` (started from the snapshot, the webhook takes ~8 MiB more RSS).
# `node` is also on PATH (the chart's `helm test` pod runs `node -e`).

# The runtime's own node starts from the blob, on the target platform (exec form: no shell in the
# runtime): a blob it refuses (exit 14) fails the build here instead of every pod start. A stage of
# its own, which entry-snapshot takes the blob from (so it is always built first): what a RUN leaves
# behind (the mount points of /etc/hosts, hostname, resolv.conf) stays out of the image.
FROM runtime AS snapshot-check
COPY --from=build /src/dist/fetch.snapshot.blob /app/
RUN ["/nodejs/bin/node", "--snapshot-blob", "/app/fetch.snapshot.blob", "/app/sm-injector.mjs", "version"]

FROM runtime AS entry-snapshot
COPY --from=snapshot-check /app/fetch.snapshot.blob /app/
ENTRYPOINT ["/nodejs/bin/node", "--snapshot-blob", "/app/fetch.snapshot.blob", "/app/sm-injector.mjs"]
# (after ENTRYPOINT: setting one resets the CMD a stage inherits)
CMD ["help"]

FROM runtime AS entry-plain
ENTRYPOINT ["/nodejs/bin/node", "/app/sm-injector.mjs"]
CMD ["help"]
