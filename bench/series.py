"""A long CT series through efen, timed by part, and the same mask written as a SEG by highdicom.

Writes an axial CT series (default 300 slices of 512x512, 16-bit, a body ellipse with a sphere
lesion, shuffled file names), runs `efen run` on it once under /usr/bin/time (peak RSS), and
prints what efen reports for the series: grouping (headers to ordered stacks, from its log),
decode, inference, and the writing of seg.dcm, mask.nii.gz and the montage (result.json). Then
it writes a SEG of the very same mask with highdicom (read from efen's mask.nii.gz, one frame per
slice with foreground, as efen writes it) and times that, for the comparison.

Usage: bench/series.py [--slices 300] [--size 512] [--keep DIR]
Needs $EFEN_BIN (scripts/setup.sh) and the venv's pydicom, highdicom and nibabel
(scripts/series-fixtures.sh installs them).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
SPACING, THICKNESS = 0.8, 1.25


def ct_slice(k, n, size, series, study, frame_of_reference):
    z = k * THICKNESS
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = CT_IMAGE
    ds.SOPClassUID = CT_IMAGE
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Bench^Series", "BENCH-1", "", "O"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame_of_reference
    ds.StudyDate, ds.StudyTime, ds.ReferringPhysicianName, ds.StudyID, ds.AccessionNumber = "20260101", "120000", "", "1", ""
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 1, n - k
    ds.PositionReferenceIndicator, ds.Manufacturer, ds.PatientPosition = "", "efen bench", "HFS"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    half = size * SPACING / 2
    ds.ImagePositionPatient = [-half, -half, z]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing, ds.SliceThickness = [SPACING, SPACING], THICKNESS
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows = ds.Columns = size
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleIntercept, ds.RescaleSlope, ds.WindowCenter, ds.WindowWidth = -1024, 1, 40, 400
    y, x = (np.mgrid[0:size, 0:size] - size / 2) * SPACING
    body = (x / (0.4 * size * SPACING)) ** 2 + (y / (0.3 * size * SPACING)) ** 2 <= 1
    zc = n * THICKNESS / 2
    lesion = x ** 2 + (y - 20) ** 2 + (z - zc) ** 2 <= (0.1 * size * SPACING) ** 2
    rng = np.random.default_rng(k)
    hu = np.where(body, 40.0, -1000.0) + np.where(lesion, 260.0, 0.0) + rng.normal(0, 8, body.shape)
    ds.PixelData = np.clip(np.round(hu + 1024), 0, 4095).astype("<u2").tobytes()
    return ds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="efen-series-bench-"))
    series_dir = work / "series"
    shutil.rmtree(series_dir, ignore_errors=True)
    series_dir.mkdir(parents=True)
    study, series, frame_of_reference = generate_uid(), generate_uid(), generate_uid()
    sources = []
    for k in range(args.slices):
        ds = ct_slice(k, args.slices, args.size, series, study, frame_of_reference)
        ds.save_as(series_dir / f"{ds.SOPInstanceUID}.dcm", enforce_file_format=True)
        sources.append(ds)

    efen = os.environ["EFEN_BIN"]
    env = dict(os.environ,
               EFEN_PATHS__STATE_DIR=str(work / "state"),
               EFEN_PATHS__OUT_DIR=str(work / "out"),
               EFEN_DATABASE__URL=f"sqlite://{work / 'efen.db'}")
    for sub in ("state", "out"):
        shutil.rmtree(work / sub, ignore_errors=True)
    (work / "efen.db").unlink(missing_ok=True)
    started = time.monotonic()
    run = subprocess.run(["/usr/bin/time", "-v", efen, "run", str(series_dir)], env=env,
                         capture_output=True, text=True)
    wall = time.monotonic() - started
    if run.returncode != 0:
        raise SystemExit(f"efen run failed ({run.returncode}):\n{run.stderr[-3000:]}")
    peak_mib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", run.stderr).group(1)) / 1024
    grouping = re.search(r"grouping_ms=([\d.]+)", run.stderr)
    [case] = [p for p in (work / "out").iterdir() if p.is_dir()]
    result = json.loads((case / "result.json").read_text())
    t, emit = result["timings_ms"], result["series"]["emit_ms"]

    # The same mask as a SEG by highdicom: mask.nii.gz back into (slice, row, column) in the
    # series' spatial order (efen's NIfTI: x = column, y = row, z = slice ascending).
    volume = np.asarray(nib.load(case / "mask.nii.gz").dataobj).transpose(2, 1, 0).astype(bool)
    ordered = sorted(sources, key=lambda ds: float(ds.ImagePositionPatient[2]))
    keep = [k for k in range(len(ordered)) if volume[k].any()]
    description = hd.seg.SegmentDescription(
        segment_number=1, segment_label="lesion",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Lesion,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name="EFEN", version="1", family=codes.DCM.ArtificialIntelligence))
    started = time.monotonic()
    seg = hd.seg.Segmentation(
        source_images=[ordered[k] for k in keep], pixel_array=volume[keep],
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=[description],
        series_instance_uid=hd.UID(), series_number=900, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="highdicom", manufacturer_model_name="bench", software_versions="1",
        device_serial_number="1", omit_empty_frames=True)
    seg.save_as(work / "highdicom_seg.dcm")
    highdicom_ms = (time.monotonic() - started) * 1e3

    print(json.dumps({
        "slices": args.slices, "size": args.size, "frames_with_foreground": len(keep),
        "efen_wall_s": round(wall, 2), "efen_peak_rss_mib": round(peak_mib, 1),
        "grouping_ms": float(grouping.group(1)) if grouping else None,
        "decode_ms": round(t["decode_ms"], 1), "preprocess_ms": round(t["preprocess_ms"], 1),
        "infer_ms": round(t["infer_ms"], 1), "postprocess_ms": round(t["postprocess_ms"], 1),
        "evaluate_ms": round(t["evaluate_ms"], 1),
        "seg_write_ms": round(emit["seg_ms"], 1), "nifti_write_ms": round(emit["nifti_ms"], 1),
        "montage_write_ms": round(emit["overlay_ms"], 1),
        "highdicom_seg_write_ms": round(highdicom_ms, 1),
        "seg_bytes": (case / "seg.dcm").stat().st_size,
        "highdicom_seg_bytes": (work / "highdicom_seg.dcm").stat().st_size,
        "volume_ml": result["series"]["volume_ml"],
    }, indent=1))
    if not args.keep:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
