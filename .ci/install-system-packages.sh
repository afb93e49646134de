#!/usr/bin/env bash
# Install the Debian packages some tests need, when they are missing: Tesseract (the OCR engine of
# --pixel-text, whose default needs it; tesseract-ocr brings its English model tesseract-ocr-eng),
# Chromium (report.html is rendered headless), buildah/podman/debootstrap (the container smoke
# test), SLURM + munge (a real single-node cluster) and shellcheck (the SLURM scripts' lint). One
# `apt-get install`.
# Exit 0: everything is there and we are root (those tests must then run, not skip);
# 3: not root, or no apt-get (those tests skip with their reason); other: the install failed.
set -euo pipefail
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "ci: not root or no apt-get: browser, container and SLURM tests will skip" >&2
  exit 3
fi
# program -> Debian package
declare -A wanted=(
  [tesseract]=tesseract-ocr [chromium]=chromium [buildah]=buildah [podman]=podman [debootstrap]=debootstrap
  [slurmctld]=slurmctld [slurmd]=slurmd [sbatch]=slurm-client [munged]=munge [shellcheck]=shellcheck
)
missing=()
for program in "${!wanted[@]}"; do
  PATH="$PATH:/usr/sbin:/sbin" command -v "$program" >/dev/null 2>&1 || missing+=("${wanted[$program]}")
done
[ "${#missing[@]}" -gt 0 ] || exit 0
echo "ci: installing ${missing[*]} with apt-get" >&2
apt_get=(apt-get -o DPkg::Lock::Timeout=600 -qq)
export DEBIAN_FRONTEND=noninteractive
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! apt-cache show "${missing[@]}" >/dev/null 2>&1; then
  "${apt_get[@]}" update >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
fi
"${apt_get[@]}" install -y --no-install-recommends "${missing[@]}" >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
