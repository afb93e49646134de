"""A straightforward implementation of the seed's nine extraction steps, for comparison only.

This is what a careful researcher writes first with pydicom, scipy.ndimage and nibabel
defaults: read every file, sort by position, HU in float64, threshold and largest component
with ``ndimage.label``, ``ndimage.zoom(order=1)`` to the target spacing, crop/pad around the
body centroid, save with nibabel. It is not used by orbitct-app.

Usage: python baseline.py SERIES_DIR OUT.nii.gz
"""

from __future__ import annotations

import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from scipy import ndimage

TARGET = 0.5
SIZE = 512


def main(series_dir: Path, out: Path) -> None:
    # 1-2. read every slice and sort it geometrically (position along the slice normal)
    slices = [pydicom.dcmread(p) for p in sorted(series_dir.rglob("*")) if p.is_file()]
    iop = np.array(slices[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    slices.sort(key=lambda ds: float(np.dot(normal, np.array(ds.ImagePositionPatient, dtype=float))))
    # 3. HU with each slice's rescale
    volume = np.stack([ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept) for ds in slices])
    positions = np.array([np.dot(normal, np.array(ds.ImagePositionPatient, dtype=float)) for ds in slices])
    dz = float(np.median(np.diff(positions)))
    dy, dx = (float(v) for v in slices[0].PixelSpacing)
    # 5. body mask: threshold at -200 HU, largest 3D component, outside = -1000
    mask = volume > -200
    labels, n = ndimage.label(mask)
    sizes = ndimage.sum(mask, labels, range(1, n + 1))
    body = labels == (int(np.argmax(sizes)) + 1)
    volume[~body] = -1000
    # 6. resample to isotropic target spacing, linear interpolation
    resampled = ndimage.zoom(volume, (dz / TARGET, dy / TARGET, dx / TARGET), order=1)
    body_resampled = ndimage.zoom(body.astype(np.uint8), (dz / TARGET, dy / TARGET, dx / TARGET), order=0)
    # 7. centre on the body centroid, crop/pad in-plane to SIZE x SIZE
    _, cy, cx = (round(c) for c in ndimage.center_of_mass(body_resampled))
    out_volume = np.full((resampled.shape[0], SIZE, SIZE), -1000.0)
    y0, x0 = cy - SIZE // 2, cx - SIZE // 2
    ys, xs = max(0, y0), max(0, x0)
    ye, xe = min(resampled.shape[1], y0 + SIZE), min(resampled.shape[2], x0 + SIZE)
    out_volume[:, ys - y0 : ye - y0, xs - x0 : xe - x0] = resampled[:, ys:ye, xs:xe]
    # 8. affine: LPS direction cosines to RAS, target spacing, origin moved with the crop
    first = np.array(slices[0].ImagePositionPatient, dtype=float)
    origin = first + x0 * TARGET * iop[:3] + y0 * TARGET * iop[3:]
    affine = np.eye(4)
    affine[:3, 0], affine[:3, 1], affine[:3, 2] = iop[:3] * TARGET, iop[3:] * TARGET, normal * TARGET
    affine[:3, 3] = origin
    affine = np.diag([-1, -1, 1, 1]) @ affine
    # 9. save
    image = nib.Nifti1Image(np.round(out_volume).astype(np.int16).transpose(2, 1, 0), affine)
    nib.save(image, out)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
