# nats-server built from the same nats-server/v2 module version the project uses.
FROM golang:1.26 AS build
WORKDIR /src
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/nats-server github.com/nats-io/nats-server/v2

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/nats-server /nats-server
EXPOSE 4222 6222 8222
ENTRYPOINT ["/nats-server", "-c", "/etc/nats/nats.conf"]
