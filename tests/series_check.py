"""Peer check of efen's outputs for one DICOM series: a multi-frame SEG, optionally its NIfTI
mask, against the source series, with tools that are not efen's (dciodvfy, highdicom, nibabel,
numpy). Prints one JSON object on stdout; exits 1 with the reasons on stderr when a check fails.

Usage: series_check.py SEG.dcm SERIES [--nifti MASK.nii.gz] [--truth TRUTH.npy] [--min-dsc X]
                       [--stack N] [--skip-dciodvfy] [--dcmqi]

SERIES is the source series: a folder (searched recursively; files of other series and non-DICOM
files are ignored) or one multi-frame file.

Checks:
  1. dciodvfy reports no Error line for the SEG.
  2. highdicom reads the SEG; every frame references exactly one source frame that exists in
     SERIES (and is listed in the SEG's Referenced Series Sequence), its Plane Position equals that
     frame's Image Position (Patient), its orientation and pixel spacing equal the source's, and no
     two frames claim the same source frame and segment.
  3. With --nifti (needs nibabel): sform/qform agree; each source slice of the stack maps, through
     the NIfTI affine and the LPS→RAS flip of the first two axes, onto a whole voxel plane (any
     axis order or flip is accepted, and reported); those voxels equal the SEG's mask. Voxel
     planes with no source slice (a gap filled on a regular grid) are counted, not judged.
  4. With --dcmqi: dcmqi's segimage2itkimage (a dcmtk-based decoder) turns the SEG into NIfTI,
     which must agree with the mask highdicom read (dcmqi crops to the slices with frames).
  5. With --truth ((slice, row, column) in spatial order): the 3D Dice of the SEG's mask volume.

Stacks: the source frames grouped by Image Orientation (Patient), each sorted along its normal
(row direction × column direction); numbered by their lowest Instance Number (then first file).
"""

import argparse
import json
import shutil
import subprocess
import sys
import traceback
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
POSITION_TOLERANCE_MM = 0.01
DIRECTION_TOLERANCE = 1e-4
VOXEL_TOLERANCE = 1e-2
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


class CheckFailed(Exception):
    pass


def floats(value):
    return [float(v) for v in value] if value is not None else None


def functional(ds, index, sequence, attribute):
    """An attribute from frame `index`'s per-frame functional group, else the shared one."""
    groups = []
    if "PerFrameFunctionalGroupsSequence" in ds and index < len(ds.PerFrameFunctionalGroupsSequence):
        groups.append(ds.PerFrameFunctionalGroupsSequence[index])
    if "SharedFunctionalGroupsSequence" in ds and len(ds.SharedFunctionalGroupsSequence):
        groups.append(ds.SharedFunctionalGroupsSequence[0])
    for group in groups:
        items = group.get(sequence)
        if items and attribute in items[0]:
            return items[0].get(attribute)
    return None


# --- the source series -------------------------------------------------------------------------
class SourceFrame:
    def __init__(self, sop_class, sop_uid, frame, frames, position, orientation, spacing, instance, file):
        self.sop_class, self.sop_uid, self.frame, self.frames = sop_class, sop_uid, frame, frames
        self.position, self.orientation, self.spacing = position, orientation, spacing
        self.instance, self.file = instance, file


def read_series(path, series_uid):
    """Source frames of `series_uid` under `path`, keyed by (SOP Instance UID, frame number)."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    frames, other_series, shape, frames_of_reference = {}, set(), set(), set()
    for file in files:
        try:
            ds = pydicom.dcmread(file, stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError):
            continue
        if "SOPInstanceUID" not in ds or "Rows" not in ds:
            continue  # not an image (or a broken file the series would not contain)
        if ds.get("SeriesInstanceUID") != series_uid:
            other_series.add(str(ds.get("SeriesInstanceUID")))
            continue
        shape.add((int(ds.Rows), int(ds.Columns)))
        count = int(ds.get("NumberOfFrames", 1) or 1)
        for index in range(count):
            if "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds:
                position = functional(ds, index, "PlanePositionSequence", "ImagePositionPatient")
                orientation = functional(ds, index, "PlaneOrientationSequence", "ImageOrientationPatient")
                spacing = functional(ds, index, "PixelMeasuresSequence", "PixelSpacing")
            else:
                position, orientation = ds.get("ImagePositionPatient"), ds.get("ImageOrientationPatient")
                spacing = ds.get("PixelSpacing")
            if position is None or orientation is None or spacing is None:
                raise CheckFailed(f"{file.name} frame {index + 1}: no position, orientation or pixel spacing")
            # Direction cosines as unit vectors: a source off unit length by a rounding and the SEG
            # that carries them normalised point the same way.
            directions = np.array(floats(orientation)).reshape(2, 3)
            directions = (directions / np.linalg.norm(directions, axis=1, keepdims=True)).reshape(6)
            frames[(str(ds.SOPInstanceUID), index + 1)] = SourceFrame(
                str(ds.SOPClassUID), str(ds.SOPInstanceUID), index + 1, count, np.array(floats(position)),
                directions, np.array(floats(spacing)),
                int(ds.get("InstanceNumber", 0) or 0), file.name)
        frames_of_reference.add(str(ds.get("FrameOfReferenceUID", "")))
    if not frames:
        found = f" (it holds series {', '.join(sorted(other_series))})" if other_series else ""
        raise CheckFailed(f"no image of series {series_uid} under {path}{found}")
    if len(shape) != 1:
        raise CheckFailed(f"the source frames have several sizes: {sorted(shape)}")
    if len(frames_of_reference) != 1:
        raise CheckFailed(f"the source has several Frames of Reference: {sorted(frames_of_reference)}")
    return frames, frames_of_reference.pop(), shape.pop()


def stacks_of(frames):
    """Frames grouped by orientation, each sorted along its normal; numbered as the docstring says."""
    groups = {}
    for frame in frames.values():
        key = tuple(np.round(frame.orientation, 4))
        groups.setdefault(key, []).append(frame)
    stacks = []
    for key, members in groups.items():
        orientation = np.array(key)
        normal = np.cross(orientation[:3], orientation[3:])
        members.sort(key=lambda f: float(f.position @ normal))
        along = np.array([float(f.position @ normal) for f in members])
        steps = np.diff(along)
        if len(steps) and np.any(steps < POSITION_TOLERANCE_MM):
            raise CheckFailed(f"two source frames share a position in the stack of orientation {list(key)}")
        stacks.append({"orientation": orientation, "normal": normal, "frames": members,
                       "steps": steps, "regular": bool(len(steps) == 0 or np.ptp(steps) < POSITION_TOLERANCE_MM)})
    stacks.sort(key=lambda s: (min(f.instance for f in s["frames"]), min(f.file for f in s["frames"])))
    return stacks


# --- 1. dciodvfy -------------------------------------------------------------------------------
def run_dciodvfy(path):
    if shutil.which("dciodvfy") is None:
        raise CheckFailed("dciodvfy not found (Debian package dicom3tools); --skip-dciodvfy skips this check")
    done = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    lines = (done.stdout + done.stderr).splitlines()
    errors = [line for line in lines if line.startswith("Error")]
    return errors, sorted({line for line in lines if line.startswith("Warning")})


# --- 2. the SEG against the series -------------------------------------------------------------
def check_seg(seg_path, series_path, failures):
    import highdicom as hd

    try:
        seg = hd.seg.segread(seg_path)
    except Exception as error:
        raise CheckFailed(f"highdicom cannot read {seg_path.name}: {type(error).__name__}: {error}")
    if seg.SOPClassUID != SEGMENTATION_STORAGE:
        raise CheckFailed(f"{seg_path.name} is not a Segmentation (SOP Class {seg.SOPClassUID})")
    referenced_series = [str(item.SeriesInstanceUID) for item in seg.get("ReferencedSeriesSequence", [])]
    if len(referenced_series) != 1:
        raise CheckFailed(f"the SEG references {len(referenced_series)} series; one was expected")
    listed = {str(i.ReferencedSOPInstanceUID) for s in seg.ReferencedSeriesSequence
              for i in s.get("ReferencedInstanceSequence", [])}
    source, frame_of_reference, (rows, columns) = read_series(series_path, referenced_series[0])
    if str(seg.get("FrameOfReferenceUID", "")) != frame_of_reference:
        failures.append(f"Frame of Reference UID {seg.get('FrameOfReferenceUID')} is not the source's {frame_of_reference}")
    if (int(seg.Rows), int(seg.Columns)) != (rows, columns):
        raise CheckFailed(f"the SEG is {seg.Columns}×{seg.Rows}, the source {columns}×{rows}")
    segments = {int(s.SegmentNumber): str(s.SegmentLabel) for s in seg.SegmentSequence}

    count = int(seg.get("NumberOfFrames", 1))
    pixels = np.asarray(seg.pixel_array).reshape(count, rows, columns)
    if seg.SegmentationType == "FRACTIONAL":
        pixels = pixels >= (int(seg.MaximumFractionalValue) + 1) // 2
    pixels = pixels.astype(bool)

    placed = {}  # (sop, frame, segment) -> SEG frame index
    for index in range(count):
        where = f"SEG frame {index + 1}"
        item = seg.PerFrameFunctionalGroupsSequence[index]
        refs = [r for d in item.get("DerivationImageSequence", []) for r in d.get("SourceImageSequence", [])]
        if len(refs) != 1:
            failures.append(f"{where}: {len(refs)} source image references; one was expected")
            continue
        ref = refs[0]
        sop = str(ref.ReferencedSOPInstanceUID)
        numbers = [int(n) for n in np.atleast_1d(ref.get("ReferencedFrameNumber", []) or [])]
        candidates = [f for (uid, _), f in source.items() if uid == sop]
        if not candidates:
            failures.append(f"{where}: references {sop}, which is not in the source series")
            continue
        if len(numbers) > 1 or (not numbers and candidates[0].frames > 1):
            failures.append(f"{where}: references {sop} without exactly one Referenced Frame Number "
                            f"(it has {candidates[0].frames} frames)")
            continue
        frame = source.get((sop, numbers[0] if numbers else 1))
        if frame is None:
            failures.append(f"{where}: references frame {numbers[0]} of {sop}, which has {candidates[0].frames}")
            continue
        if str(ref.get("ReferencedSOPClassUID", "")) != frame.sop_class:
            failures.append(f"{where}: Referenced SOP Class {ref.get('ReferencedSOPClassUID')} is not {frame.sop_class}")
        if sop not in listed:
            failures.append(f"{where}: {sop} is missing from the Referenced Series Sequence")
        position = functional(seg, index, "PlanePositionSequence", "ImagePositionPatient")
        orientation = functional(seg, index, "PlaneOrientationSequence", "ImageOrientationPatient")
        spacing = functional(seg, index, "PixelMeasuresSequence", "PixelSpacing")
        if position is None or np.abs(np.array(floats(position)) - frame.position).max() > POSITION_TOLERANCE_MM:
            failures.append(f"{where}: Plane Position {position} is not the Image Position (Patient) "
                            f"{frame.position.tolist()} of {frame.file} frame {frame.frame}")
        if orientation is None or np.abs(np.array(floats(orientation)) - frame.orientation).max() > DIRECTION_TOLERANCE:
            failures.append(f"{where}: orientation {orientation} is not the source's {frame.orientation.tolist()}")
        if spacing is None or np.abs(np.array(floats(spacing)) - frame.spacing).max() > 1e-4:
            failures.append(f"{where}: pixel spacing {spacing} is not the source's {frame.spacing.tolist()}")
        # highdicom moves a value all frames share into the shared groups; so may others.
        segment = functional(seg, index, "SegmentIdentificationSequence", "ReferencedSegmentNumber")
        segment = int(segment) if segment is not None else None
        if segment not in segments:
            failures.append(f"{where}: segment {segment} is not in the Segment Sequence {sorted(segments)}")
            continue
        key = (sop, frame.frame, segment)
        if key in placed:
            failures.append(f"{where}: frame {placed[key] + 1} already holds segment {segment} of this source frame")
        placed[key] = index
    return seg, source, segments, pixels, placed


def mask_volume(stack, segments, pixels, placed, rows, columns):
    """(slice, row, column) label map of a stack in spatial order: the segment number, 0 outside.
    Overlapping segments cannot be one label map: returned as None with the overlap count."""
    volume = np.zeros((len(stack["frames"]), rows, columns), np.uint16)
    overlap = 0
    for k, frame in enumerate(stack["frames"]):
        for segment in sorted(segments):
            index = placed.get((frame.sop_uid, frame.frame, segment))
            if index is not None:
                mask = pixels[index]
                overlap += int(np.count_nonzero(mask & (volume[k] != 0)))
                volume[k][mask] = segment
    return volume, overlap


# --- 3. the NIfTI ------------------------------------------------------------------------------
def nifti_mapping(stack, inverse, flip):
    """For each slice of the stack: voxel indices of pixel (0, 0), and the NIfTI axes (with sign)
    that a column step and a row step move along. None when the geometry does not fit the grid."""
    to_world = LPS_TO_RAS if flip else np.eye(3)
    r_dir, c_dir = stack["orientation"][:3], stack["orientation"][3:]
    mapped = []
    for frame in stack["frames"]:
        def voxel(point):
            return inverse[:3, :3] @ (to_world @ point) + inverse[:3, 3]
        origin = voxel(frame.position)
        step_col = voxel(frame.position + frame.spacing[1] * r_dir) - origin
        step_row = voxel(frame.position + frame.spacing[0] * c_dir) - origin
        axes = []
        for step in (step_col, step_row):
            axis = int(np.argmax(np.abs(step)))
            unit = np.zeros(3)
            unit[axis] = np.sign(step[axis])
            if np.abs(step - unit).max() > VOXEL_TOLERANCE:
                return None
            axes.append((axis, int(unit[axis])))
        if axes[0][0] == axes[1][0] or np.abs(origin - np.round(origin)).max() > VOXEL_TOLERANCE:
            return None
        mapped.append((np.round(origin).astype(int), axes))
    return mapped


def check_nifti(path, stacks, volumes, single_segment, failures, may_crop=False):
    import nibabel as nib

    image = nib.load(str(path))
    data = np.asanyarray(image.dataobj)
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise CheckFailed(f"{path.name}: shape {data.shape}; a 3D label volume was expected")
    sform, sform_code = image.header.get_sform(coded=True)
    qform, qform_code = image.header.get_qform(coded=True)
    if sform_code and qform_code and np.abs(sform - qform).max() > 1e-3:
        failures.append(f"{path.name}: sform and qform disagree:\n{sform}\n{qform}")
    if not (sform_code or qform_code):
        failures.append(f"{path.name}: neither sform nor qform is set (no world geometry)")
    inverse = np.linalg.inv(image.affine)

    # The stack is the one whose geometry fits the NIfTI grid.
    fitting = [(i, m) for i, s in enumerate(stacks) if (m := nifti_mapping(s, inverse, flip=True))]
    if not fitting:
        unflipped = [i for i, s in enumerate(stacks) if nifti_mapping(s, inverse, flip=False)]
        hint = (" It fits in LPS: the LPS→RAS flip of the first two axes is missing." if unflipped else "")
        raise CheckFailed(f"{path.name}: the affine does not place any source stack on its voxel grid.{hint}\n"
                          f"affine:\n{image.affine}")
    stack_index, mapped = fitting[0]
    stack, expected = stacks[stack_index], volumes[stack_index]
    slice_axes = {3 - a[0][0] - a[1][0] for _, a in mapped}
    if len(slice_axes) != 1:
        raise CheckFailed(f"{path.name}: the source slices do not share one NIfTI slice axis")
    slice_axis = slice_axes.pop()
    rows, columns = expected.shape[1:]
    r, c = np.mgrid[0:rows, 0:columns]
    used, mismatched, outside = set(), 0, 0
    for k, (origin, ((col_axis, col_sign), (row_axis, row_sign))) in enumerate(mapped):
        index = [None, None, None]
        index[col_axis] = origin[col_axis] + col_sign * c
        index[row_axis] = origin[row_axis] + row_sign * r
        index[slice_axis] = np.full_like(r, origin[slice_axis])
        if any(i.min() < 0 or i.max() >= n for i, n in zip(index, data.shape)):
            outside += 1
            if not (may_crop and not expected[k].any()):
                failures.append(f"{path.name}: source slice {k} (spatial order) falls outside the volume {data.shape}")
            continue
        used.add(int(origin[slice_axis]))
        got = data[tuple(index)]
        want = expected[k]
        if single_segment:
            got, want = got != 0, want != 0
        bad = int(np.count_nonzero(got != want))
        if bad:
            mismatched += 1
            failures.append(f"{path.name}: source slice {k} (spatial order, {stack['frames'][k].file}): "
                            f"{bad} voxels differ from the SEG")
    extra = [i for i in range(data.shape[slice_axis]) if i not in used]
    extra_voxels = int(sum(np.count_nonzero(np.take(data, i, axis=slice_axis)) for i in extra))
    col_axis, col_sign = mapped[0][1][0]
    row_axis, row_sign = mapped[0][1][1]
    first, last = mapped[0][0][slice_axis], mapped[-1][0][slice_axis]
    names = "ijk"
    return {
        "file": path.name,
        "stack": stack_index,
        "shape": list(data.shape),
        "dtype": str(data.dtype),
        "layout": {"column": f"{'+' if col_sign > 0 else '-'}{names[col_axis]}",
                   "row": f"{'+' if row_sign > 0 else '-'}{names[row_axis]}",
                   "slice": f"{'+' if last >= first else '-'}{names[slice_axis]}"},
        "sform_code": int(sform_code), "qform_code": int(qform_code),
        "slices_matched": len(used) - mismatched,
        "source_slices_outside": outside,
        "extra_slices": len(extra),
        "extra_slice_voxels": extra_voxels,
    }


def check_with_dcmqi(seg_path, stacks, volumes, single_segment, failures):
    """A second SEG decoder (dcmqi, on dcmtk): its NIfTI must agree with highdicom's reading.
    dcmqi crops the volume to the slices that have SEG frames, hence may_crop."""
    import tempfile

    tool = shutil.which("segimage2itkimage") or shutil.which(
        "segimage2itkimage", path=str(Path(sys.executable).parent))
    if tool is None:
        raise CheckFailed("--dcmqi: segimage2itkimage not found (pip package dcmqi)")
    with tempfile.TemporaryDirectory() as folder:
        done = subprocess.run([tool, "--inputDICOM", str(seg_path), "--outputDirectory", folder,
                               "--outputType", "nifti"], capture_output=True, text=True)
        outputs = sorted(Path(folder).glob("*.nii.gz"))
        if done.returncode != 0 or not outputs:
            raise CheckFailed(f"dcmqi cannot read {seg_path.name}: {(done.stderr or done.stdout).strip()[-500:]}")
        if len(outputs) > 1:
            return f"skipped: dcmqi split overlapping segments into {len(outputs)} files"
        import nibabel  # noqa: F401  (dcmqi's output is read with nibabel)
        return check_nifti(outputs[0], stacks, volumes, single_segment, failures, may_crop=True)


# --- 4. Dice -----------------------------------------------------------------------------------
def dice(a, b):
    a, b = a.astype(bool), b.astype(bool)
    total = int(a.sum() + b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("seg", type=Path)
    parser.add_argument("series", type=Path)
    parser.add_argument("--nifti", type=Path)
    parser.add_argument("--truth", type=Path, help="(slice, row, column) mask in spatial order, .npy")
    parser.add_argument("--min-dsc", type=float, help="fail when the Dice with --truth is lower")
    parser.add_argument("--stack", type=int, help="stack for --truth when the series has several")
    parser.add_argument("--skip-dciodvfy", action="store_true")
    parser.add_argument("--dcmqi", action="store_true",
                        help="also decode the SEG with dcmqi's segimage2itkimage and check its NIfTI")
    args = parser.parse_args(argv)

    failures, report = [], {"seg": args.seg.name}
    try:
        if not args.skip_dciodvfy:
            errors, warns = run_dciodvfy(args.seg)
            failures += [f"dciodvfy: {line}" for line in errors]
            report["dciodvfy"] = {"errors": len(errors), "warnings": warns}

        seg, source, segments, pixels, placed = check_seg(args.seg, args.series, failures)
        rows, columns = int(seg.Rows), int(seg.Columns)
        stacks = stacks_of(source)
        volumes, overlaps = zip(*(mask_volume(s, segments, pixels, placed, rows, columns) for s in stacks))
        used = sorted({i for i, s in enumerate(stacks) for f in s["frames"]
                       for seg_no in segments if (f.sop_uid, f.frame, seg_no) in placed})
        report.update(
            frames=len(pixels),
            segments=segments,
            source_frames=len(source),
            stacks=[{"orientation": s["orientation"].tolist(), "slices": len(s["frames"]),
                     "regular": s["regular"], "seg_frames": int(sum(
                         (f.sop_uid, f.frame, n) in placed for f in s["frames"] for n in segments)),
                     "mask_voxels": int(np.count_nonzero(v))} for s, v in zip(stacks, volumes)],
            stacks_with_seg_frames=used,
        )
        if any(overlaps) and (args.nifti or args.truth):
            failures.append(f"segments overlap ({sum(overlaps)} voxels): no single label volume to compare")

        if args.nifti:
            try:
                import nibabel  # noqa: F401
            except ImportError:
                report["nifti"] = "skipped: nibabel is not installed"
                print("series_check: nibabel is not installed; the NIfTI check is skipped", file=sys.stderr)
            else:
                report["nifti"] = check_nifti(args.nifti, stacks, volumes, len(segments) == 1, failures)

        if args.dcmqi:
            report["dcmqi"] = check_with_dcmqi(args.seg, stacks, volumes, len(segments) == 1, failures)

        if args.truth:
            if args.stack is not None:
                choice = args.stack
            elif len(stacks) == 1:
                choice = 0
            else:
                raise CheckFailed(f"the series has {len(stacks)} stacks; say which one --truth is with --stack")
            if not 0 <= choice < len(stacks):
                raise CheckFailed(f"--stack {choice}: the series has {len(stacks)} stacks")
            truth = np.load(args.truth)
            volume, stack = volumes[choice], stacks[choice]
            if truth.shape != volume.shape:
                raise CheckFailed(f"truth shape {truth.shape} is not the stack's {volume.shape}")
            spacing = stack["frames"][0].spacing
            step = float(np.median(stack["steps"])) if len(stack["steps"]) else 0.0
            voxel_ml = spacing[0] * spacing[1] * step / 1000
            report["truth"] = {
                "stack": choice,
                "dsc": dice(volume, truth),
                "seg_voxels": int(np.count_nonzero(volume)),
                "truth_voxels": int(np.count_nonzero(truth)),
                "seg_volume_ml": round(int(np.count_nonzero(volume)) * voxel_ml, 6),
                "truth_volume_ml": round(int(np.count_nonzero(truth)) * voxel_ml, 6),
            }
            if args.min_dsc is not None and report["truth"]["dsc"] < args.min_dsc:
                failures.append(f"Dice {report['truth']['dsc']:.4f} is below {args.min_dsc}")
    except CheckFailed as error:
        failures.append(str(error))
    except Exception as error:  # a file the readers reject is a failure too, with its reason
        traceback.print_exc()
        failures.append(f"{type(error).__name__}: {error}")

    report["ok"] = not failures
    if failures:
        report["failures"] = failures
    print(json.dumps(report, indent=1))
    if failures:
        for line in failures:
            print(f"series_check: {line}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
