# Flotilla: one image for every service (the chart and compose pick the subcommand).
#
#   docker build -t flotilla:local .                       # full build (needs the Rust image)
#   docker build --build-arg BINARY_FROM=flotilla-binary:local \
#                --build-arg RUNTIME_IMAGE=flotilla-runtime-base:local -t flotilla:local .
#                                                          # runtime stage around a prebuilt binary
#                                                          # (what .ci/deploy-checks does)
# Base images are build args so the build can run where registries are out of reach, from bases
# made locally (debootstrap). BuildKit skips the stages the target does not need.
ARG RUST_IMAGE=docker.io/library/rust:1.94-slim-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot
# The stage or image holding the binary at /flotilla: `build` (below) or a prebuilt one.
ARG BINARY_FROM=build

# --- 1. The dependency graph only: every Cargo.toml and Cargo.lock, with stub sources. This
# layer's content changes only when a manifest does, so stage 2's dependency build stays cached.
FROM ${RUST_IMAGE} AS manifests
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src
COPY . .
RUN set -eu; mkdir -p /out; cp Cargo.lock /out/; \
    find . -name Cargo.toml -not -path './target/*' | while read -r manifest; do \
      dir=$(dirname "$manifest"); mkdir -p "/out/$dir/src"; cp "$manifest" "/out/$manifest"; \
      if [ -f "$dir/src/main.rs" ]; then echo 'fn main() {}' > "/out/$dir/src/main.rs"; fi; \
      if [ -f "$dir/src/lib.rs" ]; then : > "/out/$dir/src/lib.rs"; fi; \
      if [ -f "$dir/build.rs" ]; then echo 'fn main() {}' > "/out/$dir/build.rs"; fi; \
    done

# --- 2. Release build: dependencies first (cached), then the workspace.
FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY --from=manifests /out/ ./
RUN cargo build --release --locked --bin flotilla
COPY . .
# COPY keeps the context's old mtimes: make cargo see the real sources as newer than the stubs.
RUN find . -path ./target -prune -o -type f -exec touch {} + \
 && cargo build --release --locked --bin flotilla \
 && cp target/release/flotilla /flotilla

FROM ${BINARY_FROM} AS binary

# --- 3. Runtime: distroless (glibc, CA certificates, no shell), non-root, nothing writable but
# the volumes the deployment mounts (/tmp; /data only for the embedded mode).
FROM ${RUNTIME_IMAGE} AS runtime
COPY --from=binary /flotilla /usr/local/bin/flotilla
ENV FLOTILLA_LISTEN=0.0.0.0:8080 \
    FLOTILLA_LOG_FORMAT=json \
    FLOTILLA_DATA_DIR=/data
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/flotilla"]
