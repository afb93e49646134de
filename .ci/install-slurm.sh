#!/usr/bin/env bash
# Install what tests/test_slurm.py and tests/test_examples.py need when it is missing: Debian's
# SLURM and munge packages (a real single-node cluster) and shellcheck (the scripts' lint).
# Exit 0: everything is there and we are root (the test runs its daemons as root); 3: not root,
# or missing and no apt-get (the test will skip); anything else: the installation failed.
set -euo pipefail
if [ "$(id -u)" != 0 ]; then
  echo "ci: not root: the SLURM test will skip"
  exit 3
fi
packages=(slurmctld slurmd slurm-client munge shellcheck)
programs=(slurmctld slurmd sbatch munged shellcheck)
missing=()
for program in "${programs[@]}"; do
  command -v "$program" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$program" >/dev/null 2>&1 ||
    missing+=("$program")
done
[ "${#missing[@]}" -gt 0 ] || exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ci: ${missing[*]} missing and no apt-get: the SLURM test will skip"
  exit 3
fi
echo "ci: installing ${packages[*]} with apt-get (SLURM test)"
apt_get=(apt-get -o DPkg::Lock::Timeout=600 -qq)
export DEBIAN_FRONTEND=noninteractive
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! apt-cache show "${packages[@]}" >/dev/null 2>&1; then
  "${apt_get[@]}" update >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
fi
"${apt_get[@]}" install -y --no-install-recommends "${packages[@]}" >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
