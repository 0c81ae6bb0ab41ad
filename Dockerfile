# caretaker: one image with both programs, caretaker-agent (the DaemonSet) and
# caretaker-aggregator (the Deployment).
#
#   docker build -t caretaker/caretaker:0.1.0 .
#
# Stage `build` compiles both binaries with cargo (the agent with the size-optimised
# `release-agent` profile the benchmarks measure, the aggregator with `release-aggregator`:
# release speed, fat LTO, one codegen unit), both profiles stripping symbols.
# The final stage is a minimal glibc base with CA certificates and no shell; it runs as
# UID 65532 (the aggregator's user). The agent DaemonSet overrides it with runAsUser: 0,
# because host logs and runtime sockets are root's (deploy/README.md).
#
# Build arguments (the defaults need network access to pull them):
#   BUILDER_IMAGE  a Rust >= 1.95 toolchain on Debian 12 (glibc of the final base)
#   BASE_IMAGE     glibc, libgcc_s and /etc/ssl/certs/ca-certificates.crt
#   PREBUILT       a directory in BUILDER_IMAGE holding caretaker-agent and
#                  caretaker-aggregator already built by cargo: used instead of compiling
#                  (the offline CI test builds this Dockerfile that way; tests/tests/image.rs)
# Only the classic builder's features are used, so `DOCKER_BUILDKIT=0` works as well.

ARG BUILDER_IMAGE=docker.io/library/rust:1.95-slim-bookworm
ARG BASE_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${BUILDER_IMAGE} AS build
ARG PREBUILT=
WORKDIR /src
COPY . .
RUN set -e; mkdir -p /out; \
    if [ -n "$PREBUILT" ]; then \
      cp "$PREBUILT/caretaker-agent" "$PREBUILT/caretaker-aggregator" /out/; \
    else \
      cargo build --locked --profile release-agent -p caretaker-agent --bin caretaker-agent; \
      cargo build --locked --profile release-aggregator -p caretaker-aggregator --bin caretaker-aggregator; \
      cp target/release-agent/caretaker-agent target/release-aggregator/caretaker-aggregator /out/; \
    fi; \
    /out/caretaker-agent --version; /out/caretaker-aggregator --version

FROM ${BASE_IMAGE}
COPY --from=build /out/caretaker-agent /out/caretaker-aggregator /usr/local/bin/
USER 65532:65532
ENTRYPOINT []
CMD ["caretaker-aggregator", "--help"]
