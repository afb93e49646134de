#!/usr/bin/env bash
# Container smoke test without a Docker daemon or an image registry (buildah, podman, debootstrap;
# run as root). Builds the repository's own Dockerfile on a local Debian bookworm base and runs
# the image as a non-root user on generated sample exams, then checks the outputs.
#
#   tests/container/smoke.sh [WORK_DIR]        (default: a new folder under /var/tmp, removed)
#
# Steps:
#   1. base   a Debian bookworm minbase made with debootstrap and `podman import`, cached in the
#             container storage as $ORBITCT_BASE_IMAGE (rebuilt only when missing, or with
#             ORBITCT_REBUILD_BASE=1)
#   2. build  `buildah bud --isolation chroot --layers` of ./Dockerfile with
#             --build-arg BASE_IMAGE=<base>; the host CA bundle is a build secret for pip
#   3. image  checks of the image: entrypoint, labels, user, environment, size, no compilers or
#             caches, `orbitct-app --version`
#   4. run    `orbitct-synth` writes sample exams, then `orbitct-app /data/exams /out $STAGE` runs
#             as $RUN_USER with the input mounted read-only (buildah run ignores ENTRYPOINT, so the
#             command is named; its default --pixel-text flag runs the image's Tesseract), and
#             `anonymize --pixel-text off` alone into a second folder (the command keeps numpy
#             out of such a run: this checks it in the image's own environment); a generated
#             series with a name burned into its pixels must be flagged (the image's Tesseract reads);
#             nothing may be written in the container outside the outputs and /tmp
#   5. check  tests/container/check_outputs.py: de-identified DICOM and NIfTI files per exam,
#             series_index.csv, reports and the log in the mounted outputs, every file owned by
#             $RUN_USER
#   6. sif    no Apptainer here: the %test section of Singularity.def runs in the image with
#             /bin/sh as $RUN_USER, as `apptainer test` would run it in the SIF
#
# Settings (environment):
#   ORBITCT_SMOKE_STAGE   stage the container runs first (default: all)
#   ORBITCT_SMOKE_EXAMS   number of sample exams (default: 2)
#   ORBITCT_SMOKE_USER    uid:gid the container runs as (default: 4321:4321)
#   ORBITCT_BASE_IMAGE    local base image name (default: localhost/orbitct-base:bookworm)
#   ORBITCT_IMAGE         image name to build (default: localhost/orbitct-app:smoke)
#   ORBITCT_MAX_IMAGE_MB  image size limit (default: 800)
#   ORBITCT_DEBIAN_MIRROR mirror for debootstrap (default: http://deb.debian.org/debian)
#   ORBITCT_CA_BUNDLE     CA bundle passed to pip as a build secret
#                         (default: /etc/ssl/certs/ca-certificates.crt when it exists)
# Exit status: 0 when every check passed; 77 when a prerequisite is missing (not root, no
# buildah/podman/debootstrap); anything else is a failure.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/../.." && pwd)"
STAGE="${ORBITCT_SMOKE_STAGE:-all}"
N_EXAMS="${ORBITCT_SMOKE_EXAMS:-2}"
RUN_USER="${ORBITCT_SMOKE_USER:-4321:4321}"
BASE_IMAGE="${ORBITCT_BASE_IMAGE:-localhost/orbitct-base:bookworm}"
IMAGE="${ORBITCT_IMAGE:-localhost/orbitct-app:smoke}"
MAX_IMAGE_MB="${ORBITCT_MAX_IMAGE_MB:-800}"
MIRROR="${ORBITCT_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
CA_BUNDLE="${ORBITCT_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
PYTHON="${PYTHON:-python3}"
RUN_UID="${RUN_USER%%:*}"
RUN_GID="${RUN_USER##*:}"

T0=$SECONDS
say() { printf '[smoke %4ds] %s\n' "$((SECONDS - T0))" "$*"; }
fail() { printf '[smoke] FAILED: %s\n' "$*" >&2; exit 1; }
skip() { printf '[smoke] SKIPPED: %s\n' "$*" >&2; exit 77; }

# ---- prerequisites -----------------------------------------------------------------------------
[ "$(id -u)" = 0 ] || skip "needs root (buildah --isolation chroot, debootstrap)"
for tool in buildah podman debootstrap flock "$PYTHON"; do
  command -v "$tool" >/dev/null || skip "$tool is not installed (apt-get install buildah podman debootstrap)"
done
[ "$RUN_UID" != 0 ] || fail "ORBITCT_SMOKE_USER must not be root"

if [ $# -ge 1 ]; then
  WORK="$1"
  mkdir -p "$WORK"
  KEEP_WORK=1
else
  WORK="$(mktemp -d /var/tmp/orbitct-smoke.XXXXXX)"
  KEEP_WORK=0
fi
CONTAINER=""
cleanup() {
  if [ -n "$CONTAINER" ]; then
    buildah umount "$CONTAINER" >/dev/null 2>&1 || true
    buildah rm "$CONTAINER" >/dev/null 2>&1 || true
  fi
  if [ "$KEEP_WORK" = 0 ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT

# ---- 1. base image (cached) --------------------------------------------------------------------
make_base() {
  local root="$WORK/rootfs"
  say "base: debootstrap --variant=minbase bookworm ($MIRROR)"
  rm -rf "$root"
  debootstrap --variant=minbase bookworm "$root" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap.log" >&2; fail "debootstrap failed (log: $WORK/debootstrap.log)"; }
  # the same suites as the official debian:bookworm-slim image
  rm -f "$root/etc/apt/sources.list"
  cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${MIRROR%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  # later layers cannot remove what the base carries: drop package lists, .debs and logs
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/log/* \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/*
  tar -C "$root" --numeric-owner -c . \
    | podman import --quiet --change 'CMD ["/bin/bash"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        - "$BASE_IMAGE" >/dev/null
  rm -rf "$root"
}

exec 9>/var/tmp/orbitct-smoke-base.lock
flock 9   # one base build at a time on this machine
if [ "${ORBITCT_REBUILD_BASE:-0}" = 1 ] && podman image exists "$BASE_IMAGE"; then
  podman untag "$BASE_IMAGE" "$BASE_IMAGE"   # builds made from it keep their layers
fi
if podman image exists "$BASE_IMAGE"; then
  say "base: $BASE_IMAGE (cached)"
else
  make_base
  say "base: $BASE_IMAGE made"
fi
flock -u 9

# ---- 2. build the project's Dockerfile ---------------------------------------------------------
VERSION="$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$REPO/orbitct_app/__init__.py")"
REVISION="$(git -C "$REPO" rev-parse HEAD 2>/dev/null || echo unknown)"
SECRET=()
if [ -f "$CA_BUNDLE" ]; then SECRET=(--secret "id=pipcert,src=$CA_BUNDLE"); fi
OLD_ID="$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
say "build: buildah bud --isolation chroot --build-arg BASE_IMAGE=$BASE_IMAGE -t $IMAGE (log: $WORK/build.log)"
T_BUILD=$SECONDS
if ! buildah bud --isolation chroot --layers --pull=never \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "VERSION=$VERSION" --build-arg "REVISION=$REVISION" \
    "${SECRET[@]}" --iidfile "$WORK/iid" -t "$IMAGE" -f "$REPO/Dockerfile" "$REPO" >"$WORK/build.log" 2>&1; then
  tail -40 "$WORK/build.log" >&2
  fail "image build failed (full log: $WORK/build.log)"
fi
IMAGE_ID="$(cat "$WORK/iid")"
IMAGE_ID="${IMAGE_ID#sha256:}"
say "build: done in $((SECONDS - T_BUILD)) s, image ${IMAGE_ID:0:12}"
if [ -n "$OLD_ID" ] && [ "$OLD_ID" != "$IMAGE_ID" ]; then
  buildah rmi "$OLD_ID" >/dev/null 2>&1 || true   # the previous build's image, now untagged
fi

# ---- 3. the image ------------------------------------------------------------------------------
podman image inspect "$IMAGE_ID" >"$WORK/image.json"
SIZE_MB="$("$PYTHON" -c 'import json,sys; print(round(json.load(open(sys.argv[1]))[0]["Size"] / 1e6))' "$WORK/image.json")"
say "image: $IMAGE ${SIZE_MB} MB (limit $MAX_IMAGE_MB MB)"
# buildah 1.28 keys its layer cache on the unexpanded instruction, so a cached LABEL step keeps
# the VERSION/REVISION of the build that made it (docker does not): then stale values only warn
LABELS_CACHED=0
if grep -A1 -E 'STEP [0-9]+/[0-9]+: LABEL org\.opencontainers' "$WORK/build.log" | grep -q 'Using cache'; then
  LABELS_CACHED=1
fi
"$PYTHON" - "$WORK/image.json" "$VERSION" "$REVISION" "$LABELS_CACHED" <<'PY' || fail "image configuration"
import json, sys
image = json.load(open(sys.argv[1]))[0]
labels_cached = sys.argv[4] == "1"
config, labels = image["Config"], image["Config"].get("Labels") or {}
problems = []
if config.get("Entrypoint") != ["orbitct-app"]:
    problems.append(f"Entrypoint is {config.get('Entrypoint')}, expected exec form ['orbitct-app']")
if config.get("User", "") in ("", "0", "root", "0:0"):
    problems.append(f"the default user is root ({config.get('User')!r})")
env = dict(e.split("=", 1) for e in config.get("Env", []))
expected = {"HOME": "/tmp", "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1",
            "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
for key, value in expected.items():
    if env.get(key) != value:
        problems.append(f"ENV {key}={env.get(key)!r}, expected {value!r}")
wanted = {"title": "orbitct-app", "version": sys.argv[2], "revision": sys.argv[3],
          "licenses": "MIT", "description": None, "source": None}
for key, value in wanted.items():
    got = labels.get(f"org.opencontainers.image.{key}")
    if not got:
        problems.append(f"label org.opencontainers.image.{key} is missing")
    elif value is not None and got != value:
        message = f"label org.opencontainers.image.{key}={got!r}, expected {value!r}"
        if labels_cached and key in ("version", "revision"):
            print(f"image: warning: {message} (the LABEL step came from buildah's cache)", file=sys.stderr)
        else:
            problems.append(message)
for p in problems:
    print("image:", p, file=sys.stderr)
sys.exit(1 if problems else 0)
PY
[ "$SIZE_MB" -le "$MAX_IMAGE_MB" ] || fail "image is ${SIZE_MB} MB, over the ${MAX_IMAGE_MB} MB limit"

CONTAINER="$(buildah from --pull=never "$IMAGE_ID")"
ROOTFS="$(buildah mount "$CONTAINER")"
for f in usr/bin/gcc usr/bin/cc usr/bin/g++ usr/bin/make usr/bin/pip usr/bin/pip3 opt/orbitct/bin/pip opt/build-tools; do
  [ ! -e "$ROOTFS/$f" ] || fail "image: /$f should not be in the final image"
done
for d in root/.cache tmp/pip-* var/lib/apt/lists/*debian* var/cache/apt/archives/*.deb; do
  # shellcheck disable=SC2086  # globs are meant
  ! ls -d "$ROOTFS"/$d >/dev/null 2>&1 || fail "image: cache left in /$d"
done

IN="$WORK/data"
OUT="$WORK/out"
OUT_ANON="$WORK/out-anonymize"
rm -rf "$IN" "$OUT" "$OUT_ANON"
mkdir -p "$IN" "$OUT" "$OUT_ANON"
chown "$RUN_USER" "$IN" "$OUT" "$OUT_ANON"
crun() {  # crun [buildah run options] -- COMMAND...: run in the container as $RUN_USER
  buildah run --isolation chroot --user "$RUN_USER" "$@"
}
got="$(crun "$CONTAINER" -- orbitct-app --version)"
[ "$got" = "orbitct-app, version $VERSION" ] || fail "--version printed '$got'"
crun "$CONTAINER" -- tesseract --list-langs 2>&1 | grep -qx eng \
  || fail "image: no Tesseract with its English model (the OCR engine of --pixel-text)"
say "image: entrypoint, labels, user, environment, no compilers or caches; $got"

# ---- 4. run on sample exams --------------------------------------------------------------------
touch "$WORK/stamp"
sleep 1   # so that anything written by the run is strictly newer than the stamp
T_RUN=$SECONDS
crun -v "$IN:/data" "$CONTAINER" -- orbitct-synth /data/exams --n-exams "$N_EXAMS" \
  || fail "orbitct-synth in the container"
RUN_CMD=(orbitct-app /data/exams /out "$STAGE" --n-procs 2)
say "run: ${RUN_CMD[*]} as $RUN_USER (input read-only)"
set +e
crun -v "$IN:/data:ro" -v "$OUT:/out" "$CONTAINER" -- "${RUN_CMD[@]}" >"$WORK/run.log" 2>&1
rc=$?
set -e
sed 's/^/    | /' "$WORK/run.log"
[ "$rc" = 0 ] || fail "orbitct-app exited with $rc"
grep -q "no text found" "$OUT/anonymize_report.csv" \
  || fail "the run did not check the kept series' pixels for text (--pixel-text flag, the default)"
say "run: sample exams written and processed in $((SECONDS - T_RUN)) s (pixels checked for text)"
ANON_CMD=(orbitct-app /data/exams /out anonymize --n-procs 1 -q --pixel-text off)
crun -v "$IN:/data:ro" -v "$OUT_ANON:/out" "$CONTAINER" -- "${ANON_CMD[@]}" >"$WORK/anon.log" 2>&1 \
  || { sed 's/^/    | /' "$WORK/anon.log"; fail "${ANON_CMD[*]}"; }
grep -q "numpy left unloaded" "$OUT_ANON/logs/orbitct-app.log" \
  || fail "the anonymize run loaded numpy (no 'numpy left unloaded' in its log)"
say "run: ${ANON_CMD[*]} without numpy"
# the image's Tesseract reads: a generated series with a name burned into its pixels is flagged
TEXT="$WORK/text"
rm -rf "$TEXT"
mkdir -p "$TEXT/in" "$TEXT/out"
chown "$RUN_USER" "$TEXT/in" "$TEXT/out"
crun -v "$TEXT/in:/data" "$CONTAINER" -- python3 -c 'from pathlib import Path
from orbitct_app.synthetic import BurnedText, SeriesSpec, write_exam
text = BurnedText(("DOE^JOHN", "1970-03-12"), size=11)
write_exam(Path("/data"), "exam_text", [SeriesSpec(kind="axial", series_number=2, n_slices=12, burned_text=text)])' \
  || fail "writing a series with text burned into its pixels"
crun -v "$TEXT/in:/data:ro" -v "$TEXT/out:/out" "$CONTAINER" -- orbitct-app /data /out anonymize -q --n-procs 1 \
  >"$WORK/text.log" 2>&1 || { sed 's/^/    | /' "$WORK/text.log"; fail "anonymize of the series with text"; }
grep -q "text in frame [0-9]* of 12" "$TEXT/out/anonymize_report.csv" \
  || fail "the image's Tesseract did not find the text burned into a generated series"
say "run: the image's Tesseract found the text burned into a generated series"

# nothing written in the container's file system except under /tmp (the tmpfs under --read-only);
# buildah itself makes the mount points and /etc/hosts, /etc/resolv.conf, /etc/hostname
written="$(cd "$ROOTFS" && find . -xdev -newer "$WORK/stamp" -not -path . \
  -not -path './tmp' -not -path './tmp/*' -not -path './data' -not -path './out' \
  -not -path './dev' -not -path './dev/*' -not -path './proc' -not -path './sys' \
  -not -path './run' -not -path './run/*' -not -path './etc/hosts' -not -path './etc/resolv.conf' \
  -not -path './etc/hostname' -not -path './etc' -print)"
[ -z "$written" ] || fail "the run wrote inside the container: $written"

# ---- 5. outputs --------------------------------------------------------------------------------
"$PYTHON" "$REPO/tests/container/check_outputs.py" "$OUT" --input "$IN/exams" --stage "$STAGE" \
  --uid "$RUN_UID" --gid "$RUN_GID" || fail "outputs"
"$PYTHON" "$REPO/tests/container/check_outputs.py" "$OUT_ANON" --input "$IN/exams" --stage anonymize \
  --uid "$RUN_UID" --gid "$RUN_GID" || fail "outputs of anonymize"
# ---- 6. Singularity.def's %test, in the image ------------------------------------------------
awk '/^%test/{on=1; next} /^%/{on=0} on' "$REPO/Singularity.def" >"$WORK/sif-test.sh"
grep -q orbitct-app "$WORK/sif-test.sh" || fail "no %test section in Singularity.def"
crun -v "$WORK/sif-test.sh:/sif-test.sh:ro" "$CONTAINER" -- /bin/sh /sif-test.sh >"$WORK/sif-test.log" 2>&1 \
  || { cat "$WORK/sif-test.log" >&2; fail "Singularity.def %test in the image"; }
say "sif: Singularity.def %test passed in the image"

say "PASSED: image $IMAGE (${SIZE_MB} MB) ran '${RUN_CMD[*]}' as $RUN_USER"
