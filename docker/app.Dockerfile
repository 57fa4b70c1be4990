# The web app (target `web`, gunicorn) and the grading worker (target `worker`): one venv with
# the project and every dependency but the torch stack, which only the sandbox image has
# (sandbox.Dockerfile); neither process imports torch.
#
# Built from the repository root (compose.yaml does this; .dockerignore keeps the context to
# the sources):
#   docker build -f docker/app.Dockerfile --target web    -t cnn-grader-web    .
#   docker build -f docker/app.Dockerfile --target worker -t cnn-grader-worker .
#
# BASE_IMAGE is any Debian bookworm image: debian:bookworm-slim from a registry, or here the local
# debootstrap import of scripts/setup-docker.sh (cnn-grader-base:bookworm). The build installs
# Debian packages and wheels, so it needs the network (compose builds with `network: host`).
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS app
# Identical to the first step of sandbox.Dockerfile, so the builder caches it once for both.
RUN set -eu; apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-venv ca-certificates; \
    rm -rf /var/lib/apt/lists/*
ARG PIP_INDEX_URL=https://pypi.org/simple
ARG PIP_EXTRA_INDEX_URL=
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_INDEX_URL=${PIP_INDEX_URL} \
    PIP_EXTRA_INDEX_URL=${PIP_EXTRA_INDEX_URL}
# Dependencies first (read from pyproject.toml), so a change of the code reuses this layer.
# docker/build-ca/*.crt: CAs pip trusts besides Debian's during the build (a TLS-inspecting proxy;
# scripts/setup-compose.sh copies the host's); usually empty.
COPY pyproject.toml docker/requirements.py /opt/build/
COPY docker/build-ca/ /opt/build/ca/
RUN set -eu; cat /etc/ssl/certs/ca-certificates.crt /opt/build/ca/*.crt > /opt/build/cacert.pem 2>/dev/null \
        || cp /etc/ssl/certs/ca-certificates.crt /opt/build/cacert.pem; \
    python3 -m venv /opt/venv; \
    python3 /opt/build/requirements.py /opt/build/pyproject.toml app > /opt/build/app.txt; \
    PIP_CERT=/opt/build/cacert.pem /opt/venv/bin/pip install -r /opt/build/app.txt
COPY pyproject.toml README.md /opt/cnn-grader/
COPY grader /opt/cnn-grader/grader
COPY leaderboard /opt/cnn-grader/leaderboard
COPY hidden_tests /opt/cnn-grader/hidden_tests
COPY docker/entrypoint.sh docker/healthcheck.py /opt/cnn-grader/docker/
# --no-deps: the torch stack stays out (see above); the editable install keeps the sources in
# /opt/cnn-grader, where grader/config.py finds hidden_tests/ beside grader/.
RUN set -eu; PIP_CERT=/opt/build/cacert.pem /opt/venv/bin/pip install -q --no-deps -e /opt/cnn-grader; \
    chmod -R a+rX /opt/cnn-grader; \
    useradd --system --uid 10001 --home-dir /srv --shell /usr/sbin/nologin grader; \
    # The uid:gid the worker (root) runs every sandbox container as, never root (grader/sandbox/
    # base.py sandbox_host_ids; scripts/sandbox-user.sh on a host).
    useradd --system --user-group --uid 10002 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin grader-sandbox; \
    mkdir -p /srv/instance/uploads; chown -R grader:grader /srv/instance
ENV PATH=/opt/venv/bin:${PATH} PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    LEADERBOARD_INSTANCE=/srv/instance GRADER_HOME=/srv/grader
WORKDIR /srv
ENTRYPOINT ["/opt/cnn-grader/docker/entrypoint.sh"]

FROM app AS web
LABEL org.cnn-grader.image=web
USER grader
EXPOSE 8000
# gunicorn reads more options from GUNICORN_CMD_ARGS (compose.yaml sets workers and threads).
CMD ["gunicorn", "--bind", "0.0.0.0:8000", "--access-logfile", "-", "leaderboard:create_app()"]
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "/opt/cnn-grader/docker/healthcheck.py", "web"]

FROM app AS worker
LABEL org.cnn-grader.image=worker
# The docker CLI alone (it talks to the engine through the mounted socket; no engine in here),
# taken from Debian's docker.io without its dependencies; and the raw FashionMNIST files that
# `grader build-tests` reads.
RUN set -eu; apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends dataset-fashion-mnist; \
    cd /tmp; apt-get download docker.io; \
    dpkg-deb --fsys-tarfile docker.io_*.deb | tar -x -C / ./usr/bin/docker; \
    rm -f docker.io_*.deb; rm -rf /var/lib/apt/lists/*; docker --version
# Root: it needs the docker socket (which is root on the host anyway, see DEPLOY.md).
USER root
CMD ["grader", "worker", "--verbose"]
HEALTHCHECK --interval=15s --timeout=10s --start-period=30s --retries=3 \
    CMD ["python3", "/opt/cnn-grader/docker/healthcheck.py", "worker"]
