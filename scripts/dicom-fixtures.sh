#!/usr/bin/env bash
# Builds tests/fixtures/dicom/ for the DICOM tests (tests/dicom.rs, src/dicom/): the sample files
# shipped inside the pydicom wheel, files converted with dcmtk from samples/synthetic to cover the
# transfer syntaxes, a reference decode of each (int32 .npy, made by pydicom or by dcmtk + pydicom)
# and manifest.json that lists them. Idempotent: it does nothing when the manifest is up to date.
# Installs what it needs when missing: dcmtk, dicom3tools, cmake and g++ (apt), pydicom (into
# $EFEN_VENV, which scripts/python-env.sh creates when absent).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

PYDICOM_VERSION=3.0.2
# Bump when the fixture set changes, so that an old folder is rebuilt.
FIXTURES_VERSION=5
out=tests/fixtures/dicom

# cmake and g++ build CharLS (the JPEG-LS codec of dicom-pixeldata's `charls` feature).
need=()
for tool in img2dcm dcmcjpeg dcmcrle dcmcjpls dcmconv dcmdjpeg dcmdrle dcmdjpls dciodvfy cmake g++; do
  command -v "$tool" >/dev/null || need+=("$tool")
done
if ((${#need[@]})); then
  echo "dicom-fixtures: installing dcmtk, dicom3tools, cmake and g++ (missing: ${need[*]})"
  sudo=()
  [[ $(id -u) == 0 ]] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq dcmtk dicom3tools cmake g++ >/dev/null
fi

if [[ ! -x "$EFEN_VENV/bin/python" ]]; then
  scripts/python-env.sh
fi
if ! "$EFEN_VENV/bin/python" -c "import pydicom, sys; sys.exit(pydicom.__version__ != '$PYDICOM_VERSION')" 2>/dev/null; then
  echo "dicom-fixtures: installing pydicom==$PYDICOM_VERSION into $EFEN_VENV"
  "$EFEN_VENV/bin/pip" install --quiet --disable-pip-version-check "pydicom==$PYDICOM_VERSION"
fi

stamp="$PYDICOM_VERSION/$FIXTURES_VERSION/$(sha256sum "$0" | cut -d' ' -f1)"
if [[ -f "$out/manifest.json" && "$(cat "$out/.stamp" 2>/dev/null)" == "$stamp" ]]; then
  echo "dicom-fixtures: $out is up to date"
  exit 0
fi
rm -rf "$out"
mkdir -p "$out"
"$EFEN_VENV/bin/python" - "$out" <<'PYTHON'
# (embedded in scripts/dicom-fixtures.sh; argv[1] is the output folder)
import json
import shutil
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import convert_color_space
from pydicom.uid import ExplicitVRLittleEndian, UID

warnings.simplefilter("ignore")
out = Path(sys.argv[1])
work = out / "work"
work.mkdir(parents=True)
samples = Path("samples/synthetic")
# Fixed UIDs so that reruns give the same files (2.25.<decimal> from fixed UUIDs).
ROOT = "2.25.1111111111111111111111111111111"


def run(*args):
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))}: {done.stderr.strip()}")


def synthetic(name, frames, photometric, bits_stored, signed=False, planar=0, extra=None):
    """A native explicit-VR-LE secondary-capture-like image with patient, study, series,
    frame of reference and plane attributes, so SEG tests have something to copy."""
    frames = np.asarray(frames)
    if frames.ndim == 2 or (frames.ndim == 3 and photometric not in ("MONOCHROME1", "MONOCHROME2", "PALETTE COLOR")):
        frames = frames[None]
    samples_pp = 1 if frames.ndim == 3 else frames.shape[-1]
    n, rows, cols = frames.shape[:3]
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7" if n == 1 else "1.2.840.10008.5.1.4.1.1.7.2"
    ds.SOPInstanceUID = f"{ROOT}.{zlib.crc32(name.encode())}"
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientName = "Fixture^Synthetic"
    ds.PatientID = "EFEN-0001"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = f"{ROOT}.1"
    ds.StudyDate = "20260101"
    ds.StudyTime = "120000"
    ds.StudyID = "1"
    ds.AccessionNumber = "ACC-0001"
    ds.ReferringPhysicianName = ""
    ds.SeriesInstanceUID = f"{ROOT}.2"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.Modality = "OT"
    ds.ConversionType = "WSD"
    ds.FrameOfReferenceUID = f"{ROOT}.3"
    ds.PositionReferenceIndicator = ""
    ds.ImagePositionPatient = [-100, -100, 0]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [0.5, 0.5]
    ds.SliceThickness = 1
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = samples_pp
    ds.PhotometricInterpretation = photometric
    if samples_pp > 1:
        ds.PlanarConfiguration = planar
    if n > 1:
        ds.NumberOfFrames = n
    allocated = 8 if bits_stored <= 8 else 16
    if bits_stored == 1:
        allocated = 1
    ds.BitsAllocated = allocated
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = int(signed)
    for key, value in (extra or {}).items():
        setattr(ds, key, value)
    if allocated == 1:
        ds.PixelData = pydicom.pixels.pack_bits(frames.astype(np.uint8).ravel())
    else:
        dtype = {(8, False): np.uint8, (16, False): np.uint16, (16, True): np.int16}[(allocated, signed)]
        data = frames.astype(dtype)
        if samples_pp > 1 and planar == 1:
            data = np.moveaxis(data, -1, 1)
        ds.PixelData = data.tobytes()
    ds.save_as(out / name, enforce_file_format=True)
    return out / name


# --- synthetic sources -------------------------------------------------------------------------
gray8 = np.asarray(Image.open(samples / "case01.png").convert("L"))
rgb8 = np.asarray(Image.open(samples / "case01.png").convert("RGB"))
gray16 = np.asarray(Image.open(samples / "case06_16bit.png")).astype(np.int64)
if gray16.ndim == 3:
    gray16 = gray16[..., 0]
made = {}
made["gray8"] = synthetic("syn_gray8.dcm", gray8, "MONOCHROME2", 8)
made["gray16"] = synthetic("syn_gray16_window.dcm", gray16, "MONOCHROME2", 16,
                           extra={"RescaleSlope": 1, "RescaleIntercept": -1024,
                                  "WindowCenter": 31000, "WindowWidth": 20000})
# Modality LUT Sequence instead of rescale: stored v → 4000 - 15 v (inverts), 16-bit entries.
ds = pydicom.dcmread(synthetic("syn_modality_lut.dcm", gray8, "MONOCHROME2", 8,
                               extra={"WindowCenter": 2000, "WindowWidth": 4000}))
mlut = Dataset()
mlut.LUTDescriptor = [256, 0, 16]
mlut.ModalityLUTType = "US"
mlut.LUTData = np.array([4000 - 15 * v for v in range(256)], dtype="<u2").tobytes()
ds.ModalityLUTSequence = [mlut]
ds.save_as(out / "syn_modality_lut.dcm")
made["gray12u"] = synthetic("syn_gray12u.dcm", gray16 >> 4, "MONOCHROME2", 12)
synthetic("syn_gray12_signed.dcm", (gray16 >> 4) - 2048, "MONOCHROME2", 12, signed=True,
          extra={"RescaleSlope": 2, "RescaleIntercept": 10})
synthetic("syn_mono1.dcm", gray8, "MONOCHROME1", 8)
synthetic("syn_gray8_3frames.dcm", np.stack([gray8, 255 - gray8, gray8 // 2]), "MONOCHROME2", 8)
synthetic("syn_bits1.dcm", (gray8 > 127).astype(np.uint8), "MONOCHROME2", 1)
made["rgb8"] = synthetic("syn_rgb8.dcm", rgb8, "RGB", 8)
synthetic("syn_rgb8_planar.dcm", rgb8, "RGB", 8, planar=1)
synthetic("syn_ybr_full.dcm", convert_color_space(rgb8, "RGB", "YBR_FULL"), "YBR_FULL", 8)
odd = rgb8[:, : rgb8.shape[1] // 2 * 2]
ybr = convert_color_space(odd, "RGB", "YBR_FULL").astype(np.int64)
# YBR_FULL_422 native: per two pixels Y1 Y2 Cb Cr, chroma averaged.
pairs = ybr.reshape(ybr.shape[0], -1, 2, 3)
packed = np.concatenate([pairs[..., 0], pairs[..., 1:, 1].mean(axis=2, keepdims=True).round(),
                         pairs[..., 1:, 2].mean(axis=2, keepdims=True).round()], axis=-1)
ds = pydicom.dcmread(synthetic("syn_ybr_full_422.dcm", odd, "RGB", 8))
ds.PhotometricInterpretation = "YBR_FULL_422"
ds.PixelData = packed.astype(np.uint8).tobytes()
ds.save_as(out / "syn_ybr_full_422.dcm")

# Enhanced-CT-like: rescale and windows only in the functional groups, geometry per frame.
ds = pydicom.dcmread(synthetic("syn_enhanced_ct.dcm", np.stack([gray16, gray16[::-1]]), "MONOCHROME2", 16))
ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2.1"
for key in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness"):
    delattr(ds, key)
shared, transform, orientation, measures = Dataset(), Dataset(), Dataset(), Dataset()
transform.RescaleIntercept, transform.RescaleSlope, transform.RescaleType = -1024, 1, "HU"
orientation.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
measures.PixelSpacing, measures.SliceThickness = [0.7, 0.7], 2
shared.PixelValueTransformationSequence = [transform]
shared.PlaneOrientationSequence = [orientation]
shared.PixelMeasuresSequence = [measures]
ds.SharedFunctionalGroupsSequence = [shared]
per_frame = []
for index, (center, width) in enumerate([(30000, 20000), (40000, 4000)]):
    item, voi, position = Dataset(), Dataset(), Dataset()
    voi.WindowCenter, voi.WindowWidth = center, width
    position.ImagePositionPatient = [-100, -100, 2 * index]
    item.FrameVOILUTSequence = [voi]
    item.PlanePositionSequence = [position]
    per_frame.append(item)
ds.PerFrameFunctionalGroupsSequence = per_frame
ds.save_as(out / "syn_enhanced_ct.dcm")

# --- dcmtk conversions -------------------------------------------------------------------------
for key in ("gray8", "gray16", "rgb8"):
    src = made[key]
    for flag, ts in (("+ti", "implicit"), ("+tb", "bigendian"), ("+td", "deflated")):
        run("dcmconv", flag, src, out / f"dcmtk_{key}_{ts}.dcm")
    run("dcmcrle", src, out / f"dcmtk_{key}_rle.dcm")
    run("dcmcjpeg", "+e1", src, out / f"dcmtk_{key}_jpeg_lossless_sv1.dcm")
    run("dcmcjpeg", "+el", src, out / f"dcmtk_{key}_jpeg_lossless.dcm")
    run("dcmcjpls", "+el", src, out / f"dcmtk_{key}_jpegls_lossless.dcm")
    run("dcmcjpls", "+en", src, out / f"dcmtk_{key}_jpegls_near.dcm")
    if key != "gray16":
        run("dcmcjpeg", "+eb", src, out / f"dcmtk_{key}_jpeg_baseline.dcm")
        run("dcmcjpeg", "+ee", src, out / f"dcmtk_{key}_jpeg_extended8.dcm")
run("dcmcjpeg", "+ee", made["gray12u"], out / "dcmtk_gray12_jpeg_extended12.dcm")
run("dcmcjpeg", "+el", made["gray12u"], out / "dcmtk_gray12_jpeg_lossless.dcm")
run("img2dcm", samples / "case03.jpg", out / "img2dcm_case03_jpeg.dcm")
run("img2dcm", "-i", "BMP", samples / "case05.bmp", out / "img2dcm_case05_bmp.dcm")

# --- pydicom's own samples ---------------------------------------------------------------------
test_files = Path(pydicom.__file__).parent / "data" / "test_files"
for f in sorted(test_files.glob("*.dcm")):
    shutil.copy(f, out / f"pydicom_{f.name}")

# --- reference decodes -------------------------------------------------------------------------
LOSSY = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.81",
         "1.2.840.10008.1.2.4.91"}
DECOMPRESS = {"1.2.840.10008.1.2.5": "dcmdrle", "1.2.840.10008.1.2.4.80": "dcmdjpls",
              "1.2.840.10008.1.2.4.81": "dcmdjpls"}


def pixels(path):
    ds = pydicom.dcmread(path)
    return ds, ds.pixel_array


manifest = []
for path in sorted(out.glob("*.dcm")):
    entry = {"file": path.name}
    try:
        ds = pydicom.dcmread(path, force=True)
        ts = str(getattr(ds.file_meta, "TransferSyntaxUID", "") or "")
        entry.update(
            transfer_syntax=ts,
            sop_class=str(ds.get("SOPClassUID", "")),
            photometric=str(ds.get("PhotometricInterpretation", "")),
            bits_allocated=int(ds.get("BitsAllocated", 0) or 0),
            bits_stored=int(ds.get("BitsStored", 0) or 0),
            samples=int(ds.get("SamplesPerPixel", 0) or 0),
            frames=int(ds.get("NumberOfFrames", 1) or 1),
            rows=int(ds.get("Rows", 0) or 0),
            columns=int(ds.get("Columns", 0) or 0),
            has_pixel_data="PixelData" in ds,
            lossy=ts in LOSSY or str(ds.get("LossyImageCompression", "")) == "01",
        )
    except Exception as error:  # a file broken on purpose: the Rust side must fail cleanly
        entry.update(has_pixel_data=False, header_error=str(error)[:200])
        manifest.append(entry)
        continue
    reference, note = None, None
    if entry["has_pixel_data"]:
        try:
            _, array = pixels(path)
            note = "pydicom"
        except Exception as error:
            note = f"pydicom: {str(error)[:160]}"
            tool = DECOMPRESS.get(ts) or ("dcmdjpeg" if ts.startswith("1.2.840.10008.1.2.4.") else None)
            array = None
            if tool:
                plain = work / path.name
                try:
                    run(tool, path, plain)
                    _, array = pixels(plain)
                    note = f"{tool} + pydicom"
                except Exception as error2:
                    note += f"; {tool}: {str(error2)[:160]}"
        if array is not None:
            frames, samples_pp = entry["frames"], entry["samples"]
            shape = (frames, entry["rows"], entry["columns"], samples_pp)
            try:
                array = np.asarray(array).astype(np.int32).reshape(shape)
                reference = path.stem + ".ref.npy"
                np.save(out / reference, array)
            except Exception as error:
                note += f"; reshape to {shape}: {error}"
    entry.update(reference=reference, reference_note=note)
    manifest.append(entry)

shutil.rmtree(work)
(out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
PYTHON
echo "$stamp" > "$out/.stamp"
echo "dicom-fixtures: wrote $(find "$out" -name '*.dcm' | wc -l) DICOM files to $out"
