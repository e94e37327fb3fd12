# bosun's container image: a static build on a distroless, non-root base.
#   docker build -t ghcr.io/bosun-dev/bosun:0.1.0 .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# Without the `dev` feature: no local control plane builder, no examples (see the README).
RUN cargo build --release --locked -p bosun --no-default-features && strip target/release/bosun

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/bosun /usr/local/bin/bosun
# Metacontroller's Helm chart runs `command: /usr/bin/metacontroller`: the same binary answers
# to that name by running the engine.
COPY --from=build /src/target/release/bosun /usr/bin/metacontroller
USER 65532:65532
EXPOSE 9999 8081
ENTRYPOINT ["/usr/local/bin/bosun"]
CMD ["run"]
