# syntax=docker/dockerfile:1
#
# orbitct-app container image: Debian bookworm's Python 3.11 and one virtual environment with the
# pinned, hash-checked dependencies of requirements/lock.txt plus the app. docs/containers.md has the
# build and run commands.
#
#   docker build -t orbitct-app .
#   docker run --rm --user "$(id -u):$(id -g)" -v /path/to/dicom:/data:ro -v /path/to/out:/out \
#       orbitct-app /data /out all
#
# Build arguments:
#   BASE_IMAGE  a Debian bookworm image (the local smoke test passes one made with debootstrap)
#   VERSION     orbitct-app's version, for the labels (CI passes the package's __version__)
#   REVISION    the git commit, for the labels
# Build secret (optional): id=pipcert, a CA bundle for pip when a proxy re-signs TLS
#   (buildah bud / docker build --secret id=pipcert,src=/etc/ssl/certs/ca-certificates.crt).

ARG BASE_IMAGE=debian:bookworm-slim

# ---- build: the virtual environment ------------------------------------------------------------
FROM ${BASE_IMAGE} AS build
ARG DEBIAN_FRONTEND=noninteractive

# Unpinned Debian packages are deliberate: the distribution's security updates should land on a
# rebuild; the Python packages are the pinned ones.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_NO_INPUT=1 \
    PYTHONDONTWRITEBYTECODE=1

# /opt/build-tools: pip, setuptools and wheel for building the app (never copied on);
# /opt/orbitct: the runtime venv, without pip.
COPY requirements/lock.txt requirements/build.txt /src/requirements/
RUN --mount=type=secret,id=pipcert,target=/run/secrets/pipcert \
    if [ -f /run/secrets/pipcert ]; then export PIP_CERT=/run/secrets/pipcert; fi \
 && python3 -m venv /opt/build-tools \
 && /opt/build-tools/bin/pip install --require-hashes --only-binary=:all: \
        -r /src/requirements/build.txt \
 && python3 -m venv --without-pip /opt/orbitct \
 && /opt/build-tools/bin/pip --python /opt/orbitct/bin/python install \
        --require-hashes --only-binary=:all: -r /src/requirements/lock.txt

COPY pyproject.toml README.md LICENSE /src/
COPY orbitct_app/ /src/orbitct_app/
RUN /opt/build-tools/bin/pip wheel --no-deps --no-build-isolation --no-index -w /src/dist /src \
 && /opt/build-tools/bin/pip --python /opt/orbitct/bin/python install --no-deps --no-index \
        /src/dist/orbitct_app-*.whl \
 && /opt/orbitct/bin/orbitct-app --version

# ---- runtime: Debian's python3, Tesseract and the venv, nothing else ----------------------------------------
FROM ${BASE_IMAGE} AS runtime
ARG DEBIAN_FRONTEND=noninteractive

# Tesseract and its English model: the OCR engine of --pixel-text (offline, about 30 MB).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 tesseract-ocr tesseract-ocr-eng \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/cache/debconf/*-old /var/log/apt \
           /var/log/dpkg.log /var/log/alternatives.log

COPY --from=build /opt/orbitct /opt/orbitct

# Any --user works: the files are root-owned and world-readable, HOME and the temporary folder
# are /tmp (a tmpfs under --read-only), Python writes no bytecode and ignores user site-packages.
# The numeric libraries run one thread per process: orbitct-app parallelises over exams with
# --n-procs worker processes and gives each worker its share of the cores as threads itself.
ENV PATH=/opt/orbitct/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/tmp \
    TMPDIR=/tmp \
    LANG=C.UTF-8 \
    PYTHONNOUSERSITE=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    OMP_NUM_THREADS=1 \
    OPENBLAS_NUM_THREADS=1 \
    MKL_NUM_THREADS=1

# declared here, after the slow steps, so that a new commit does not invalidate their cache
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="orbitct-app" \
      org.opencontainers.image.description="Turn clinical CT DICOM exams into a de-identified, analysis-ready NIfTI dataset" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://github.com/orbitct/orbitct-app" \
      org.opencontainers.image.licenses="MIT"
# provenance: recorded as GeneratedBy.Container in dataset_description.json, sidecars, run records
ENV ORBITCT_CONTAINER=docker \
    ORBITCT_CONTAINER_IMAGE="orbitct-app:${VERSION}"

# Not root by default; `docker run --user "$(id -u):$(id -g)"` makes outputs belong to the caller.
USER 65534:65534
WORKDIR /tmp
ENTRYPOINT ["orbitct-app"]
CMD ["--help"]
