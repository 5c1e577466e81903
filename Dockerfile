# syntax=docker/dockerfile:1
# Tessera's container images, from one multi-stage build:
#   docker build --target tessera -t tessera .     planner, CLI (and the builtin worker)
#   docker build --target collector -t tessera-collector .   the collector, with ffmpeg for movies
#   docker build --target worker  -t tessera-worker --build-arg RENDERER_PACKAGES="povray" .
# The `worker` stage is the place for renderers: Debian packages named in RENDERER_PACKAGES
# are installed into it (POV-Ray: "povray"; Blender: "blender"), or build FROM it and add
# your own.

FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY streams streams
COPY schema schema
COPY tests tests
RUN cargo build --release --locked --bins \
    && mkdir /out \
    && cp target/release/tessera target/release/tessera-planner \
          target/release/tessera-collector target/release/tessera-worker /out/

FROM debian:bookworm-slim AS tessera
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates tini \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --create-home --home-dir /var/lib/tessera tessera
COPY --from=build /out/ /usr/local/bin/
USER tessera
WORKDIR /var/lib/tessera
ENV TESSERA_CACHE=/var/lib/tessera/cache
# tini forwards SIGTERM to the role, which drains (the worker hands its tasks back).
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["tessera", "--help"]

# The collector writes each sequence's movie through ffmpeg.
FROM tessera AS collector
USER root
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/*
USER tessera
CMD ["tessera-collector"]

FROM tessera AS worker
ARG RENDERER_PACKAGES=""
USER root
RUN if [ -n "$RENDERER_PACKAGES" ]; then \
        apt-get update \
        && apt-get install -y --no-install-recommends $RENDERER_PACKAGES \
        && rm -rf /var/lib/apt/lists/*; \
    fi
USER tessera
CMD ["tessera-worker"]
