#!/usr/bin/env bash
# Try orbitct-app end to end on generated sample exams, with no other preparation:
# installs the app into ./.venv, writes 3 synthetic CT exams to demo/input and runs the whole
# pipeline (anonymize + extract) into demo/output.
set -euo pipefail
cd "$(dirname "$0")"
. scripts/venv.sh            # creates/updates ./.venv with the pinned dependencies
rm -rf demo
"$VENV/bin/orbitct-synth" demo/input --n-exams 3
# The check for text burned into pixels (--pixel-text, on by default) needs the OCR engine
# Tesseract, a Debian package: without it the demo runs with the check off and says so.
pixel_text=()
if ! command -v tesseract >/dev/null 2>&1; then
  echo "Tesseract is not installed: the demo runs with --pixel-text off (no check for text in pixels)." >&2
  echo "Install it to include the check: sudo apt-get install tesseract-ocr tesseract-ocr-eng" >&2
  pixel_text=(--pixel-text off)
fi
"$VENV/bin/orbitct-app" demo/input demo/output all "${pixel_text[@]}"
cat <<'MSG'

Done. Look at:
  demo/output/report.html           one page: totals, warnings, every series, QC pictures
  demo/output/series_index.csv      one row per NIfTI written
  demo/output/nifti/<exam>/         the .nii.gz volumes, their JSON sidecars and _qc.png pictures
  demo/output/anonymized/<exam>/    the de-identified DICOM
  demo/output/anonymize_report.csv  and extract_report.csv: a decision and reason per series
  demo/output/logs/orbitct-app.log  the full log
MSG
