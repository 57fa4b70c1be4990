# The runner image WITH the interpreter and the torch stack baked in, for a worker in a container
# (compose.yaml): there the worker cannot bind its own interpreter into a sibling container, so
# the image brings /opt/sandbox-venv/bin/python and says so in the label org.cnn-grader.python
# (grader/sandbox/docker.py then mounts no interpreter). The runner code itself is still bound
# from the worker, so the two always match. docker/Dockerfile is the small image for a grader
# running directly on the host, which binds the host's venv instead.
#
#   docker build -f docker/sandbox.Dockerfile -t cnn-grader-sandbox .      (repository root)
#
# BASE_IMAGE: any Debian bookworm image (debian:bookworm-slim, or the local debootstrap import).
# The versions come from pyproject.toml (docker/requirements.py). torch from PyPI is the CUDA
# build with its nvidia-* wheels (about 5 GB installed); in production point PIP_EXTRA_INDEX_URL
# at PyTorch's CPU index (https://download.pytorch.org/whl/cpu): about 1 GB.
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE}
# Identical to the first step of app.Dockerfile, so the builder caches it once for both.
RUN set -eu; apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-venv ca-certificates; \
    rm -rf /var/lib/apt/lists/*
ARG PIP_INDEX_URL=https://pypi.org/simple
ARG PIP_EXTRA_INDEX_URL=
# docker/build-ca/*.crt: extra CAs for pip during the build (see app.Dockerfile); usually empty.
COPY pyproject.toml docker/requirements.py /opt/build/
COPY docker/build-ca/ /opt/build/ca/
RUN set -eu; cat /etc/ssl/certs/ca-certificates.crt /opt/build/ca/*.crt > /opt/build/cacert.pem 2>/dev/null \
        || cp /etc/ssl/certs/ca-certificates.crt /opt/build/cacert.pem; \
    python3 -m venv /opt/sandbox-venv; \
    python3 /opt/build/requirements.py /opt/build/pyproject.toml sandbox > /opt/build/sandbox.txt; \
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_INDEX_URL="$PIP_INDEX_URL" \
        PIP_EXTRA_INDEX_URL="$PIP_EXTRA_INDEX_URL" PIP_CERT=/opt/build/cacert.pem \
        /opt/sandbox-venv/bin/pip install -r /opt/build/sandbox.txt; \
    /opt/sandbox-venv/bin/pip uninstall -y -q pip setuptools; \
    /opt/sandbox-venv/bin/python -c "import torch, torchvision, timm, numpy, PIL; print('torch', torch.__version__)"
# Lay it out like the bwrap sandbox and docker/Dockerfile: the same made-up /etc (nobody = 65534),
# no package manager, no home folders, no caches.
RUN set -eu; \
    rm -rf /opt/build /var/lib/apt /var/cache /var/log/* /home /usr/share/doc /usr/share/man \
           /usr/share/info /usr/share/locale; \
    # hosts, hostname and resolv.conf are the engine's (bound at build and at run time).
    find /etc -mindepth 1 -maxdepth 1 ! -name 'ld.so.conf' ! -name 'ld.so.conf.d' ! -name 'ld.so.cache' \
        ! -name 'alternatives' ! -name 'ssl' ! -name hosts ! -name hostname ! -name resolv.conf \
        -exec rm -rf {} +; \
    printf '%s\n' 'root:x:0:0:root:/nonexistent:/usr/sbin/nologin' \
        'nobody:x:65534:65534:nobody:/tmp:/usr/sbin/nologin' > /etc/passwd; \
    printf 'root:x:0:\nnogroup:x:65534:\n' > /etc/group; \
    printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files\n' > /etc/nsswitch.conf; \
    chmod 0444 /etc/passwd /etc/group /etc/nsswitch.conf; \
    test -x /usr/bin/env; test -x /bin/sh; test -x /opt/sandbox-venv/bin/python
LABEL org.cnn-grader.python=/opt/sandbox-venv/bin/python org.cnn-grader.image=sandbox
USER 65534:65534
CMD ["/bin/sh", "-c", "echo 'the grader runs this image through grader/sandbox/docker.py'"]
