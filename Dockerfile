# syntax=docker/dockerfile:1
#
# The image of every Answerback service, from this one file: the build
# argument SERVICE names the folder under services/ to build (gateway,
# aggregator, projector, salesdaily or abctl), and the image is the stage
# answerback-<SERVICE> below.
#
# The build context is the repository root: the services build in the Go
# workspace (go.work), whose modules their go.mod files replace to siblings.
#   docker build --build-arg SERVICE=aggregator -t answerback-aggregator .
# docker-compose.yml builds each image the same way (build.args.SERVICE), and
# the Helm chart runs them as <registry>/answerback-<SERVICE>.
#
# Without SERVICE the build stage fails and says so. A SERVICE with no stage
# answerback-<SERVICE> below (a misspelt name, or devstack, which ships as no
# image) fails before anything builds: BuildKit takes the missing stage for
# an image to pull and reports "answerback-<SERVICE>: failed to resolve source
# metadata ... pull access denied". SERVICE alone chooses the image: do not
# pass --target.

ARG GO_VERSION=1.26
# The service: a folder under services/. No default: an image is of one service.
ARG SERVICE

# ---- build -------------------------------------------------------------------
# Runs on the build machine's platform and cross-compiles to the target's:
# Go needs no emulation for that, so a multi-platform buildx build stays fast.
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# The whole workspace, less what .dockerignore keeps out (caches, data, VCS,
# artifacts). In workspace mode every module go.work lists must be present,
# whatever is built, so this copies the tree rather than a hand-kept list of
# go.mod files that would break whenever a module joins the workspace. The
# module cache and the build cache are BuildKit cache mounts, shared by the
# five images and kept between builds: a rebuild downloads nothing and
# recompiles only what changed.
COPY . .
# Declared after the COPY, so that the copied tree is one cached layer for
# every service; what follows depends on SERVICE.
ARG SERVICE
ARG TARGETOS
ARG TARGETARCH
# SERVICE must name a service, a folder under services/ with its main package.
RUN if [ -z "$SERVICE" ]; then \
      echo "SERVICE is unset: build with --build-arg SERVICE=<a folder under services/>, e.g. docker build --build-arg SERVICE=gateway -t answerback-gateway ." >&2; \
      exit 1; \
    fi; \
    if [ ! -f "services/$SERVICE/main.go" ]; then \
      echo "SERVICE=$SERVICE names no folder under services/ (those are: $(cd services && echo */ | tr -d /))" >&2; \
      exit 1; \
    fi
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -buildvcs=false -ldflags="-s -w" -o /out/service "./services/$SERVICE"
# An empty folder for abctl's development key (see answerback-abctl below).
RUN mkdir -p /out/keys

# ---- runtime: what every image has ---------------------------------------------
# A static binary on distroless: CA certificates (for Kafka and PostgreSQL TLS,
# and the gateway's AUTH_JWKS_URL) and time zones, no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot AS runtime
ARG SERVICE
LABEL org.opencontainers.image.title="answerback-${SERVICE}" \
      org.opencontainers.image.source="https://github.com/answerback/answerback"
# The binary is /service in every image, not /<SERVICE>: ENTRYPOINT and
# HEALTHCHECK must be in exec form (distroless has no shell to run the other
# form), and the exec form does not expand ${SERVICE}. One fixed path lets one
# ENTRYPOINT and one HEALTHCHECK serve every image. The file's name shows
# nowhere else: each service names itself in its messages and usage.
COPY --from=build /out/service /service
# distroless's nonroot user, by number so that Kubernetes' runAsNonRoot can
# verify it without a runAsUser.
USER 65532:65532
ENTRYPOINT ["/service"]

# ---- the services: long-running, with metrics and a health check ---------------
FROM runtime AS serving
# The Prometheus metrics (GET /metrics, /healthz).
ENV METRICS_ADDR=:9464
EXPOSE 9464
# Docker's health check, without a shell or curl: the binary probes its own
# GET /healthz (`<service> healthcheck`: on METRICS_ADDR, on HTTP_ADDR for the
# gateway; exit 0 when it answers 2xx). Orchestrators probe /healthz on 9464
# (204 while the process serves).
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/service", "healthcheck"]

# ---- the images: answerback-<SERVICE> ------------------------------------------

FROM serving AS answerback-gateway
LABEL org.opencontainers.image.description="Answerback gateway: the REST API; turns requests into Kafka commands and answers each with the reply the read side derived"
# The REST API, beside the metrics.
ENV HTTP_ADDR=:8080
EXPOSE 8080
# Orchestrators probe over HTTP: GET /healthz (204 while the process serves)
# and GET /readyz (204 when PostgreSQL and Kafka answer) on 8080; /healthz on
# 9464 too. On SIGTERM the gateway stops accepting, lets in-flight requests finish
# (up to its longest reply wait, 30 s, plus 5 s) and deletes its reply topic:
# give it a grace period of 40 s.

FROM serving AS answerback-aggregator
LABEL org.opencontainers.image.description="Answerback aggregator: the command side; the single writer of each aggregate, emitting its events in Kafka transactions"
# Give every instance an INSTANCE_ID of its own, stable across
# restarts: it is part of the transactional ID, so a restart fences its
# previous incarnation at once, and two live instances sharing one fence each
# other. It exits 1 when fenced: run it under a supervisor that restarts it.

FROM serving AS answerback-projector
LABEL org.opencontainers.image.description="Answerback projector: the read side; keeps the PostgreSQL views exactly once and sends each command's reply to the gateway waiting for it"
# The projector migrates the view's schema when it starts.

FROM serving AS answerback-salesdaily
LABEL org.opencontainers.image.description="Answerback salesdaily: an example downstream service; daily sales per tenant and SKU in PostgreSQL, from the orders' and catalog's events, exactly once"

# abctl: the operators' tool. docker-compose.yml runs it once at start (topics
# ensure, devkey) and on demand (token, status, ...).
FROM runtime AS answerback-abctl
LABEL org.opencontainers.image.description="Answerback abctl: the operators' tool; topics, consumer groups, view rebuilds, replays, dead letters, development keys and tokens"
# /keys, owned by the nonroot user (65532), for the development key that
# `abctl devkey` writes and `abctl token` reads. A named volume mounted here
# starts as a copy of this folder, ownership included, when it is first used
# with this image; without the folder in the image Docker would create the
# mount point owned by root and the nonroot user could not write the key.
COPY --from=build --chown=65532:65532 /out/keys /keys
# devkey's and token's default data folder (--data).
ENV ANSWERBACK_DATA_DIR=/keys
# No port and no HEALTHCHECK: abctl is a command that runs and exits.
CMD ["--help"]

# Without SERVICE: builds nothing, as its build stage fails saying SERVICE is unset.
FROM runtime AS answerback-unset

# ---- the image ------------------------------------------------------------------
FROM answerback-${SERVICE:-unset}
