# The all-in-one image: embedded NATS, embedded storage, all four services.
FROM golang:1.26 AS build
WORKDIR /src
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/volcanion ./deploy/allinone/cmd/volcanion

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/volcanion /volcanion
VOLUME /data
# NATS stays in-process. To let internal services publish, add
# "-nats-listen 0.0.0.0:4222" (docker run … volcanion -nats-listen 0.0.0.0:4222)
# and give them a .creds file from /data/nats-auth.
EXPOSE 8080
ENTRYPOINT ["/volcanion", "-data-dir", "/data", "-http-listen", "0.0.0.0:8080"]
