"""Peers judge efen's measurement report (sr.dcm, issue 29) against the SEG and result.json beside it.

    sr_check.py SR SEG RESULT_JSON [--source FILE] [--dcmqi] [--highdicom]

- dciodvfy -new finds no error;
- highdicom's srread reads it as a Comprehensive 3D SR holding a TID 1500 Measurement Report; its
  measurement group references SEG's SOP Instance UID and segment 1, and the SEG's source series
  (TID 1411) or source image (TID 1410); patient and study are the SEG's;
- its Volume (SCT 118565006, ml) equals result.json's series.volume_ml within 0.01 ml; with
  --source (a single-frame case), its Area (SCT 42798000, mm2) equals the SEG's foreground pixels
  times the source's Pixel Spacing; its DSC (99EFEN DSC) equals result.json's metrics.dsc;
- --dcmqi: dcmqi's tid1500reader converts it to JSON with the same volume (or area);
- --highdicom: highdicom builds the same report from seg.dcm and result.json, and the two content
  trees have the same items (concept names, relationships, value types, values; generated UIDs
  aside).

Prints a JSON report; exits 1 with the reasons when a check fails.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.codedict import codes

VOLUME = codes.SCT.Volume
AREA = codes.SCT.Area
DSC = hd.sr.CodedConcept("DSC", "99EFEN", "Dice similarity coefficient")


def fail(reasons):
    print("\n".join(reasons), file=sys.stderr)
    sys.exit(1)


def dciodvfy(path):
    run = subprocess.run(["dciodvfy", "-new", path], capture_output=True, text=True)
    lines = (run.stdout + run.stderr).splitlines()
    return [l for l in lines if "Error" in l], [l for l in lines if "Warning" in l]


def groups_of(report):
    planar = report.get_planar_roi_measurement_groups()
    volumetric = report.get_volumetric_roi_measurement_groups()
    return planar, volumetric


def value_of(group, name):
    found = group.get_measurements(name=name)
    return found[0].value if found else None


def flatten(items, path=()):
    """(names path, relationship, value type, value) of every item, depth first."""
    out = []
    for item in items:
        name = item.ConceptNameCodeSequence[0]
        here = path + (f"{name.CodingSchemeDesignator}:{name.CodeValue}",)
        vt = item.ValueType
        if vt == "CODE":
            c = item.ConceptCodeSequence[0]
            value = f"{c.CodingSchemeDesignator}:{c.CodeValue}:{c.CodeMeaning}"
        elif vt == "TEXT":
            value = item.TextValue
        elif vt == "UIDREF":
            # Generated identifiers differ by construction; the source series must not.
            generated = name.CodeValue in ("112040", "121012")
            value = "<generated>" if generated else item.UID
        elif vt == "NUM":
            m = item.MeasuredValueSequence[0]
            u = m.MeasurementUnitsCodeSequence[0]
            value = f"{float(m.NumericValue):.6g} {u.CodeValue}"
        elif vt == "IMAGE":
            r = item.ReferencedSOPSequence[0]
            frame = str(r.get("ReferencedFrameNumber", ""))
            # highdicom 0.28 also puts Referenced Segment Number beside a frame number, which
            # PS3.3 Table 10-3 forbids (dciodvfy says so); efen leaves it out.
            segment = "" if frame else str(r.get("ReferencedSegmentNumber", ""))
            value = (r.ReferencedSOPInstanceUID, frame, segment)
        else:
            value = ""
        template = ""
        if "ContentTemplateSequence" in item:
            template = item.ContentTemplateSequence[0].TemplateIdentifier
        out.append((" / ".join(here), item.get("RelationshipType", ""), vt, str(value), template))
        if "ContentSequence" in item:
            out.extend(flatten(item.ContentSequence, here))
    return out


def highdicom_report(sr, seg, result, planar):
    """The same report, built by highdicom from the SEG and result.json."""
    ours = hd.sr.MeasurementReport.from_sequence([sr])
    observer = ours.get_observer_contexts()[0].observer_identifying_attributes
    segment = seg.SegmentSequence[0]
    algorithm = segment.SegmentationAlgorithmIdentificationSequence[0]
    algorithm_id = hd.sr.AlgorithmIdentification(
        name=algorithm.AlgorithmName,
        version=algorithm.AlgorithmVersion,
        parameters=[algorithm.AlgorithmParameters],
    )
    measurements = []
    series = result.get("series") or {}
    if series.get("volume_ml") is not None:
        measurements.append(hd.sr.Measurement(name=VOLUME, value=series["volume_ml"],
                                              unit=hd.sr.CodedConcept("ml", "UCUM", "milliliter")))
    if planar:
        area = value_of(planar[0], AREA)
        if area is not None:
            measurements.append(hd.sr.Measurement(name=AREA, value=area, unit=codes.UCUM.SquareMillimeter))
    metrics = result.get("metrics")
    if metrics:
        for code, meaning, key in [("DSC", "Dice similarity coefficient", "dsc"),
                                   ("IOU", "Intersection over union", "iou"),
                                   ("MIOU", "Mean intersection over union", "miou"),
                                   ("PRECISION", "Precision", "precision"),
                                   ("RECALL", "Recall", "recall")]:
            measurements.append(hd.sr.Measurement(
                name=hd.sr.CodedConcept(code, "99EFEN", meaning), value=metrics[key],
                unit=hd.sr.CodedConcept("1", "UCUM", "no units")))
    common = dict(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=segment.SegmentLabel),
        finding_category=hd.sr.CodedConcept.from_dataset(segment.SegmentedPropertyCategoryCodeSequence[0]),
        finding_type=hd.sr.CodedConcept.from_dataset(segment.SegmentedPropertyTypeCodeSequence[0]),
        algorithm_id=algorithm_id,
        measurements=measurements,
    )
    if planar:
        source = seg.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0].SourceImageSequence[0]
        frames = source.get("ReferencedFrameNumber")
        group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            referenced_segment=hd.sr.ReferencedSegmentationFrame(
                sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID, frame_number=1,
                segment_number=1,
                source_image=hd.sr.SourceImageForSegmentation(
                    source.ReferencedSOPClassUID, source.ReferencedSOPInstanceUID,
                    [int(frames)] if frames else None)),
            **common)
    else:
        group = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            referenced_segment=hd.sr.ReferencedSegment(
                sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID, segment_number=1,
                source_series=hd.sr.SourceSeriesForSegmentation(
                    seg.ReferencedSeriesSequence[0].SeriesInstanceUID)),
            **common)
    modality_procedure = [i for i in sr.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "121058"]
    procedure = modality_procedure[0].ConceptCodeSequence[0]
    context = hd.sr.ObservationContext(observer_device_context=hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name=observer.name, manufacturer_name=observer.manufacturer_name,
            model_name=observer.model_name)))
    report = hd.sr.MeasurementReport(
        observation_context=context,
        procedure_reported=hd.sr.CodedConcept(procedure.CodeValue, procedure.CodingSchemeDesignator,
                                              procedure.CodeMeaning),
        imaging_measurements=[group])
    # The source images a planar group names are evidence too: stand-ins with their identity.
    evidence = [seg]
    for item in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence:
        stub = pydicom.Dataset()
        stub.SOPClassUID, stub.SOPInstanceUID = item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID
        stub.StudyInstanceUID = seg.StudyInstanceUID
        stub.SeriesInstanceUID = seg.ReferencedSeriesSequence[0].SeriesInstanceUID
        evidence.append(stub)
    return hd.sr.Comprehensive3DSR(
        evidence=evidence, content=report[0], series_instance_uid=hd.UID(), series_number=1,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="highdicom")


def tid1500reader(path):
    """dcmqi's reading: the measurement items of every group, as (code, value)."""
    binary = os.path.join(os.path.dirname(sys.executable), "tid1500reader")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "sr.json")
        run = subprocess.run([binary, "--inputDICOM", path, "--outputMetadata", out],
                             capture_output=True, text=True)
        if run.returncode != 0 or not os.path.exists(out):
            return None, run.stdout + run.stderr
        with open(out) as f:
            meta = json.load(f)
    items = []
    for group in meta.get("Measurements", []):
        for m in group.get("measurementItems", []):
            items.append((m["quantity"]["CodeValue"], float(m["value"])))
    return items, meta


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("sr")
    parser.add_argument("seg")
    parser.add_argument("result")
    parser.add_argument("--source", help="the source image of a single-frame case, for its Pixel Spacing")
    parser.add_argument("--dcmqi", action="store_true")
    parser.add_argument("--highdicom", action="store_true")
    args = parser.parse_args()
    reasons = []
    report = {}

    errors, warnings = dciodvfy(args.sr)
    report["dciodvfy_warnings"] = warnings
    if errors:
        reasons.append("dciodvfy -new:\n" + "\n".join(errors))

    sr = hd.sr.srread(args.sr)
    seg = pydicom.dcmread(args.seg)
    with open(args.result) as f:
        result = json.load(f)
    report["sop_class"] = type(sr).__name__
    if not isinstance(sr, hd.sr.Comprehensive3DSR):
        reasons.append(f"srread gives {type(sr).__name__}, not Comprehensive3DSR")
    for keyword in ["StudyInstanceUID", "PatientID", "PatientName", "AccessionNumber"]:
        if str(sr.get(keyword, "")) != str(seg.get(keyword, "")):
            reasons.append(f"{keyword} {sr.get(keyword)!r} is not the SEG's {seg.get(keyword)!r}")
    if sr.SeriesInstanceUID in (seg.SeriesInstanceUID, seg.ReferencedSeriesSequence[0].SeriesInstanceUID):
        reasons.append("the SR is not in a series of its own")
    report["series_instance_uid"] = sr.SeriesInstanceUID

    measurement_report = hd.sr.MeasurementReport.from_sequence([sr])
    planar, volumetric = groups_of(measurement_report)
    report["groups"] = {"planar": len(planar), "volumetric": len(volumetric)}
    if len(planar) + len(volumetric) != 1:
        fail(reasons + [f"expected one measurement group, found {report['groups']}"])
    group = (planar or volumetric)[0]

    # What the group references.
    referenced = group.referenced_segment if volumetric else group.referenced_segmentation_frame
    segment_item = referenced[0]
    sop = segment_item.ReferencedSOPSequence[0]
    report["referenced_seg"] = sop.ReferencedSOPInstanceUID
    if sop.ReferencedSOPInstanceUID != seg.SOPInstanceUID:
        reasons.append(f"the group references {sop.ReferencedSOPInstanceUID}, not the SEG {seg.SOPInstanceUID}")
    if volumetric and int(sop.get("ReferencedSegmentNumber", 0)) != 1:
        reasons.append(f"referenced segment {sop.get('ReferencedSegmentNumber')}, not 1")
    if planar and str(sop.get("ReferencedFrameNumber", "")) != "1":
        reasons.append(f"referenced SEG frame {sop.get('ReferencedFrameNumber')}, not 1")
    if volumetric:
        source_series = [i for i in referenced if i.ConceptNameCodeSequence[0].CodeValue == "121232"]
        if not source_series or source_series[0].UID != seg.ReferencedSeriesSequence[0].SeriesInstanceUID:
            reasons.append("the group does not name the SEG's source series")
        report["source_series"] = source_series[0].UID if source_series else None
    else:
        source = seg.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0].SourceImageSequence[0]
        images = [i for i in referenced if i.ConceptNameCodeSequence[0].CodeValue == "121233"]
        if not images or images[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID != source.ReferencedSOPInstanceUID:
            reasons.append("the planar group does not name the SEG frame's source image")

    # The algorithm.
    observer = measurement_report.get_observer_contexts()[0].observer_identifying_attributes
    report["device_observer_name"] = observer.name
    if observer.name != result["model"]["name"]:
        reasons.append(f"device observer {observer.name!r} is not the model {result['model']['name']!r}")
    parameters = [i.TextValue for i in group[0].ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "111002"]
    if not any(result["model"]["sha256"] in p for p in parameters):
        reasons.append(f"no Algorithm Parameters name the model's SHA-256: {parameters}")

    # The measurements.
    volume = value_of(group, VOLUME)
    report["volume_ml"] = volume
    expected_volume = (result.get("series") or {}).get("volume_ml")
    if expected_volume is not None:
        if volume is None or abs(volume - expected_volume) > 0.01:
            reasons.append(f"SR volume {volume} ml, result.json {expected_volume} ml")
        unit = group.get_measurements(name=VOLUME)[0].unit
        if (unit.value, unit.scheme_designator) != ("ml", "UCUM"):
            reasons.append(f"volume unit {unit}")
    elif volumetric:
        reasons.append("result.json has no volume_ml for a volumetric group")
    area = value_of(group, AREA)
    report["area_mm2"] = area
    if args.source:
        source = pydicom.dcmread(args.source, stop_before_pixels=True)
        spacing = source.get("PixelSpacing") or source.get("ImagerPixelSpacing")
        frames = seg.pixel_array.reshape(-1, seg.Rows, seg.Columns)
        foreground = int(np.count_nonzero(frames))
        expected_area = foreground * float(spacing[0]) * float(spacing[1])
        report["expected_area_mm2"] = expected_area
        if area is None or abs(area - expected_area) > 1e-6 * max(1.0, expected_area):
            reasons.append(f"SR area {area} mm2, the SEG's {foreground} pixels × spacing give {expected_area}")
    dsc = value_of(group, DSC)
    report["dsc"] = dsc
    metrics = result.get("metrics")
    if metrics:
        if dsc is None or abs(dsc - metrics["dsc"]) > 1e-9:
            reasons.append(f"SR DSC {dsc}, result.json {metrics['dsc']}")
    elif dsc is not None:
        reasons.append("a DSC without ground truth")

    if args.dcmqi:
        items, meta = tid1500reader(args.sr)
        if items is None:
            reasons.append(f"tid1500reader failed: {meta}")
        else:
            report["tid1500reader"] = items
            wanted = ("118565006", volume) if volumetric else ("42798000", area)
            if wanted[1] is not None and not any(c == wanted[0] and abs(v - wanted[1]) < 0.01 for c, v in items):
                reasons.append(f"tid1500reader has no {wanted}: {items}")

    if args.highdicom:
        theirs = highdicom_report(sr, seg, result, planar)
        ours_tree, their_tree = flatten(sr.ContentSequence), flatten(theirs.ContentSequence)
        if ours_tree != their_tree:
            diff = [f"efen:      {a}\nhighdicom: {b}" for a, b in zip(ours_tree, their_tree) if a != b]
            extra = len(ours_tree) - len(their_tree)
            reasons.append(f"content trees differ ({extra:+} items):\n" + "\n".join(diff[:8]))
        report["content_items"] = len(ours_tree)
        report["tree"] = [f"{rel} {vt} {path} = {value}" for path, rel, vt, value, _ in ours_tree]

    if reasons:
        fail(reasons)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
