# toolgate: multi-stage build of the `toolgate` binary (proxy, CLI and the bundled demo MCP server in one).
# Used by docker-compose.yml (`make stack`); the shipped policies are baked in at /etc/toolgate/policies.

FROM rust:1.95.0-slim-bookworm AS build
WORKDIR /src
COPY . .
# The registry and target caches survive between builds (BuildKit); the binary is copied out of the cache mount.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p toolgate --bin toolgate \
    && cp target/release/toolgate /usr/local/bin/toolgate

FROM debian:12.11-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/toolgate toolgate \
    && mkdir -p /var/lib/toolgate/sandbox \
    && chown -R toolgate /var/lib/toolgate
COPY --from=build /usr/local/bin/toolgate /usr/local/bin/toolgate
COPY policies /etc/toolgate/policies
USER toolgate
WORKDIR /var/lib/toolgate
EXPOSE 8080
ENTRYPOINT ["toolgate"]
CMD ["serve", "--config", "/etc/toolgate/toolgate.toml"]
