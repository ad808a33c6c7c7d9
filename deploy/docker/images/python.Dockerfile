# Stand-in for python:3.11-slim-bookworm, built with no registry and no network:
#   docker build --network none -f python.Dockerfile CONTEXT   (CONTEXT/debs/*.deb from the host)
# Debian's Python 3.11 with pip, at the paths the official image uses (/usr/local/bin/python).
ARG BASE_IMAGE=agora-local/debian:bookworm
FROM ${BASE_IMAGE}
COPY debs/ /tmp/debs/
# apt-get (not dpkg -i) orders Pre-Depends; no lists in the image, so it can only use the .debs.
RUN apt-get install -y --no-install-recommends /tmp/debs/*.deb \
    && rm -rf /tmp/debs /var/lib/apt/lists/* /var/cache/apt/*.bin \
    && rm -f /usr/lib/python3.11/EXTERNALLY-MANAGED \
    && ln -sf /usr/bin/python3.11 /usr/local/bin/python3 \
    && ln -sf /usr/bin/python3.11 /usr/local/bin/python \
    && python --version
ENV LANG=C.UTF-8
CMD ["python3"]
