# One image per service: docker build --build-arg SERVICE=edge -f deploy/docker/service.Dockerfile .
# SERVICE is edge, workers, registry or reporter (built from ./<SERVICE>/cmd/<SERVICE>),
# or natsauth (./deploy/allinone/cmd/natsauth).
FROM golang:1.26 AS build
ARG SERVICE
WORKDIR /src
COPY . .
RUN case "$SERVICE" in \
      natsauth) pkg=./deploy/allinone/cmd/natsauth ;; \
      edge|workers|registry|reporter) pkg=./$SERVICE/cmd/$SERVICE ;; \
      *) echo "unknown SERVICE '$SERVICE'" >&2; exit 1 ;; \
    esac && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/service "$pkg"

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/service /service
ENTRYPOINT ["/service"]
