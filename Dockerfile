# syntax=docker/dockerfile:1
# sm-injector: one image for the webhook (`webhook`) and the injected init container (`fetch`).
#
#   docker build -t sm-injector:dev .
#   bash scripts/build-images.sh sm-injector   # offline: buildah, local base, amd64 + arm64
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
# The bundle (entry, chunks, third-party licence files from esbuild's legalComments, and whatever
# else scripts/build.mjs writes into dist/, e.g. a startup snapshot blob), nothing else. The stage
# only copies files, so a multi-arch build runs nothing of the target architecture.
COPY --from=build /src/dist/ /app/
ENV NODE_ENV=production \
    PATH=/nodejs/bin:/usr/local/bin:/usr/bin:/bin
USER 65532:65532
WORKDIR /app
# The chart's pods pass the subcommand as args: ["webhook", ...] and the injected init container
# ["fetch"]. `node` is also on PATH (the chart's `helm test` pod runs `node -e`).
ENTRYPOINT ["/nodejs/bin/node", "/app/sm-injector.mjs"]
CMD ["help"]
LABEL org.opencontainers.image.title="sm-injector" \
      org.opencontainers.image.description="AWS Secrets Manager secrets in Kubernetes pods via a memory-backed env file (admission webhook + init container)" \
      org.opencontainers.image.licenses="Apache-2.0"
