#!/usr/bin/env bash
# Submit orbitct-app over many exams to SLURM: an array job over the labels, then the merge job.
#
#   ./submit.sh INPUT_DIR OUTPUT_DIR LABELS_FILE [STAGE] [orbitct-app options]
#
# LABELS_FILE: one exam folder name (first-level folder of INPUT_DIR) per line. STAGE: all
# (default), anonymize or extract. The options go to every orbitct-app run, e.g. --spacing 1.
# Rerunning the same command after a failure skips the exams already completed.
#
# Variables (all optional):
#   ORBITCT_ARRAY_SIZE      array tasks (default: the number of labels, at most 100)
#   ORBITCT_ARRAY_THROTTLE  at most this many tasks run at once, the %N of --array (default 20;
#                           0: no limit)
#   ORBITCT_CPUS_PER_TASK   --cpus-per-task; each task runs that many exams at a time (default 4)
#   SBATCH_OPTS             more sbatch options for both jobs, split on whitespace
#                           (e.g. "--partition=long --time=12:00:00 --mem-per-cpu=4G")
#   MERGE_SBATCH_OPTS       more sbatch options for the merge job only (e.g. "--time=00:30:00")
#   ORBITCT_IMAGE           the Apptainer/Singularity image (default: ./orbitct-app.sif)
#   APPTAINER               apptainer or singularity (default: whichever the job finds first)
#   ORBITCT_CMD             the command that runs the app instead of the image (e.g. an
#                           installed orbitct-app, or a container command of your own)
# The jobs inherit this environment (sbatch's default --export=ALL).
set -euo pipefail

prog="submit.sh"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
die() {
  echo "$prog: error: $*" >&2
  exit 2
}

# Labels of a file, one per line: Windows line endings, surrounding blanks, blank lines,
# '#' comment lines (as orbitct-app --participant-label @FILE) and repeats dropped.
# (submit.sh and orbitct-array.sbatch share this function.)
read_labels() {
  local line
  local -A seen=()
  while IFS= read -r line || [ -n "$line" ]; do
    line="${line%$'\r'}"
    line="${line#"${line%%[![:space:]]*}"}"
    line="${line%"${line##*[![:space:]]}"}"
    case "$line" in
      "" | "#"*) continue ;;
    esac
    [ -z "${seen[$line]:-}" ] || continue
    seen[$line]=1
    printf '%s\n' "$line"
  done <"$1"
}

[ "$#" -ge 3 ] || die "usage: $prog INPUT_DIR OUTPUT_DIR LABELS_FILE [STAGE] [orbitct-app options]"
input_dir="$1"
output_dir="$2"
labels_file="$3"
shift 3
[ -d "$input_dir" ] || die "INPUT_DIR is not a folder: $input_dir"
if [ ! -f "$labels_file" ] || [ ! -r "$labels_file" ]; then die "cannot read LABELS_FILE: $labels_file"; fi
case "${1:-}" in
  report) die "STAGE report is what the merge job runs; use all, anonymize or extract" ;;
esac
command -v sbatch >/dev/null 2>&1 || die "sbatch not found: run this on a SLURM login node"

mapfile -t labels < <(read_labels "$labels_file")
n_labels="${#labels[@]}"
[ "$n_labels" -gt 0 ] || die "no labels in $labels_file"

size="${ORBITCT_ARRAY_SIZE:-$((n_labels < 100 ? n_labels : 100))}"
throttle="${ORBITCT_ARRAY_THROTTLE:-20}"
cpus="${ORBITCT_CPUS_PER_TASK:-4}"
for value in "$size" "$throttle" "$cpus"; do
  case "$value" in
    "" | *[!0-9]*) die "ORBITCT_ARRAY_SIZE, ORBITCT_ARRAY_THROTTLE and ORBITCT_CPUS_PER_TASK must be whole numbers" ;;
  esac
done
if [ "$size" -lt 1 ] || [ "$cpus" -lt 1 ]; then die "ORBITCT_ARRAY_SIZE and ORBITCT_CPUS_PER_TASK must be at least 1"; fi
array="1-$size"
[ "$throttle" -eq 0 ] || array+="%$throttle"

if [ -z "${ORBITCT_CMD:-}" ]; then
  image="${ORBITCT_IMAGE:-orbitct-app.sif}"
  [ -f "$image" ] || die "image not found: $image (set ORBITCT_IMAGE, or ORBITCT_CMD to run the app another way)"
  ORBITCT_IMAGE="$(cd "$(dirname "$image")" && pwd -P)/$(basename "$image")"
  export ORBITCT_IMAGE
fi

mkdir -p "$output_dir/logs" # sbatch writes the jobs' output there from the start
output_dir="$(cd "$output_dir" && pwd -P)"
input_dir="$(cd "$input_dir" && pwd -P)"
labels_file="$(cd "$(dirname "$labels_file")" && pwd -P)/$(basename "$labels_file")"
read -r -a sbatch_opts <<<"${SBATCH_OPTS:-}"
read -r -a merge_opts <<<"${MERGE_SBATCH_OPTS:-}"

array_id="$(sbatch --parsable --array="$array" --cpus-per-task="$cpus" --job-name=orbitct \
  --output="$output_dir/logs/task-%A_%a.out" "${sbatch_opts[@]}" \
  "$here/orbitct-array.sbatch" "$input_dir" "$output_dir" "$labels_file" "$@")"
array_id="${array_id%%;*}" # --parsable prints "id" or "id;cluster"
echo "array job $array_id: $n_labels exam(s) in $size task(s) (--array=$array), $cpus CPU(s) per task"

if ! merge_id="$(sbatch --parsable --dependency="afterok:$array_id" --kill-on-invalid-dep=yes \
  --job-name=orbitct-merge --output="$output_dir/logs/merge-%j.out" "${sbatch_opts[@]}" "${merge_opts[@]}" \
  "$here/orbitct-merge.sbatch" "$output_dir" "$array_id")"; then
  echo "$prog: the merge job was not submitted; when the array is done, run:" >&2
  echo "  sbatch $here/orbitct-merge.sbatch $output_dir $array_id" >&2
  exit 1
fi
merge_id="${merge_id%%;*}"
echo "merge job $merge_id: starts when every task succeeded (cancelled if one fails)"
cat <<EOF

Watch:    squeue -j $array_id,$merge_id
Logs:     $output_dir/logs/task-${array_id}_<task>.log (.out: the task's console)
Results:  $output_dir/series_index.csv and the reports; merge summary: $output_dir/logs/merge-$merge_id.out
EOF
