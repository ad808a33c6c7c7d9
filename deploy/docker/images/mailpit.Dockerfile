# Stand-in for axllent/mailpit: Agora's own mail sink (agora_deploy.mailsink), which speaks SMTP
# on 1025 and serves Mailpit's HTTP API on 8025. Messages live in memory only.
ARG PYTHON_IMAGE=agora-local/python:3.11-bookworm
FROM ${PYTHON_IMAGE}
COPY wheels/ /tmp/wheels/
# Versions pinned by uv.lock (the exported requirements, hashes checked).
RUN python -m pip install --no-cache-dir --no-index --find-links /tmp/wheels \
        --require-hashes -r /tmp/wheels/requirements.txt \
    && rm -rf /tmp/wheels
COPY sink/ /opt/mailsink/
ENV PYTHONPATH=/opt/mailsink PYTHONUNBUFFERED=1
RUN python -c "import agora_deploy.mailsink"
EXPOSE 1025 8025
ENTRYPOINT ["python", "-m", "agora_deploy.mailsink", "--host", "0.0.0.0"]
CMD ["--smtp-port", "1025", "--http-port", "8025"]
