"""Builds tests/fixtures/series/: DICOM series for efen's series-level work (one SEG per series,
NIfTI volumes, 3D metrics). Run by scripts/series-fixtures.sh; argv[1] is the output folder.

Every fixture samples one phantom defined in patient coordinates (LPS, mm), so that series of
different orientations agree with each other and with the ground truth. UIDs and noise are fixed:
a rerun writes the same pixels and UIDs (SEG content dates aside).

Spatial order, everywhere in the manifest and the .npy files, is ascending along the slice normal
(row direction × column direction of Image Orientation (Patient)).
"""

import hashlib
import json
import subprocess
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian

warnings.simplefilter("ignore")
out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
started = time.monotonic()

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4.1"
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


def uid(name):
    """A fixed UID per name: 2.25. and 128 bits of its SHA-256 (the same name, the same UID)."""
    return f"2.25.{int.from_bytes(hashlib.sha256(f'efen series {name}'.encode()).digest()[:16], 'big')}"


def truth_seg(source_images, mask, name, series_number, **extra):
    """The ground truth as a highdicom binary SEG with one manual "lesion" segment."""
    return hd.seg.Segmentation(
        source_images=source_images,
        pixel_array=mask.astype(bool),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[hd.seg.SegmentDescription(
            segment_number=1,
            segment_label="lesion",
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=codes.SCT.Lesion,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
        )],
        series_instance_uid=uid(f"{name} seg series"),
        series_number=series_number,
        sop_instance_uid=uid(f"{name} seg instance"),
        instance_number=1,
        manufacturer="efen fixtures",
        manufacturer_model_name="series-fixtures.py",
        software_versions=f"highdicom {hd.__version__}",
        device_serial_number="1",
        content_label="TRUTH",
        **extra,
    )


def file_name(sop_uid):
    """A name that says nothing about the slice's place: a hash of its SOP Instance UID."""
    return hashlib.sha256(sop_uid.encode()).hexdigest()[:16] + ".dcm"


def normal(orientation):
    return np.cross(orientation[:3], orientation[3:]) + 0.0  # + 0.0: no -0.0 in the manifest


def ds_value(value):
    """A DS string of at most 16 characters with no float noise (0.1 + 0.2 style)."""
    text = f"{round(float(value), 6) + 0.0:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def ds_list(values):
    return [ds_value(v) for v in values]


# --- the phantom -----------------------------------------------------------------------------
# A CT-like body (elliptic cylinder along z) with a sphere lesion off centre in every axis, so
# that a flipped axis moves the lesion; an MR-like head (ellipsoid) with its own sphere.
BODY_CENTER, BODY_RADII = np.array([0.0, 5.0]), np.array([44.0, 36.0])
SPHERE_CENTER, SPHERE_RADIUS = np.array([5.2, -1.0, -66.5]), 12.0
HEAD_CENTER, HEAD_RADII = np.array([0.0, 0.0, 0.0]), np.array([70.0, 90.0, 80.0])
MR_LESION_CENTER, MR_LESION_RADIUS = np.array([22.3, -14.1, 17.6]), 12.0


def pixel_points(position, orientation, spacing, rows, columns):
    """LPS centres of a frame's pixels, shape (rows, columns, 3). PixelSpacing is (between rows,
    between columns): a column step moves along the row direction by spacing[1]."""
    row_dir, col_dir = np.array(orientation[:3]), np.array(orientation[3:])
    r, c = np.mgrid[0:rows, 0:columns]
    return (np.asarray(position, float) + c[..., None] * spacing[1] * row_dir
            + r[..., None] * spacing[0] * col_dir)


def in_sphere(points, center, radius):
    return ((points - center) ** 2).sum(-1) <= radius ** 2


def ct_hu(points, rng):
    body = (((points[..., :2] - BODY_CENTER) / BODY_RADII) ** 2).sum(-1) <= 1
    hu = np.where(body, 40.0 + rng.normal(0, 8, body.shape), -1000.0 + rng.normal(0, 3, body.shape))
    lesion = in_sphere(points, SPHERE_CENTER, SPHERE_RADIUS)
    return np.where(lesion, 300.0 + rng.normal(0, 8, body.shape), hu), lesion


def mr_signal(points, rng):
    head = (((points - HEAD_CENTER) / HEAD_RADII) ** 2).sum(-1) <= 1
    lesion = in_sphere(points, MR_LESION_CENTER, MR_LESION_RADIUS)
    value = np.where(head, 600.0, 0.0) + np.where(lesion, 700.0, 0.0)
    return np.clip(value + np.abs(rng.normal(0, 15, head.shape)), 0, 4095), lesion


# --- classic single-frame images ---------------------------------------------------------------
def common(ds, modality, series_uid, series_number, study="study", patient="EFEN-SERIES-1"):
    """Patient, General Study, General Series, Frame of Reference, General Equipment, SOP Common."""
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = "Fixture^Series"
    ds.PatientID = patient
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = uid(study)
    ds.StudyDate, ds.StudyTime = "20260101", "120000"
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.AccessionNumber = "ACC-SERIES-1"
    ds.Modality = modality
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDate, ds.SeriesTime = "20260101", "120500"
    ds.PatientPosition = "HFS"
    # Body Part Examined unpaired, so that Laterality (type 2C) is absent rightly.
    ds.BodyPartExamined = "ABDOMEN" if modality == "CT" else "HEAD"
    ds.FrameOfReferenceUID = uid(f"{study} frame of reference")
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer = "efen fixtures"
    ds.ManufacturerModelName = "series-fixtures.py"
    ds.DeviceSerialNumber = "1"
    ds.SoftwareVersions = "1"
    ds.InstitutionName = "efen"
    return ds


def classic_slice(sop_class, modality, series_uid, series_number, sop_uid, instance, position,
                  orientation, spacing, thickness, stored, study="study", extra=None):
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_uid
    common(ds, modality, series_uid, series_number, study)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL" if orientation == AXIAL else "REFORMATTED"]
    ds.InstanceNumber = instance
    ds.AcquisitionNumber = 1
    ds.ContentDate, ds.ContentTime = "20260101", "120500"
    ds.ImagePositionPatient = ds_list(position)
    ds.ImageOrientationPatient = ds_list(orientation)
    ds.PixelSpacing = ds_list(spacing)
    ds.SliceThickness = ds_value(thickness)
    # Slice Location is optional and often wrong in the wild; here it is the position along z.
    ds.SliceLocation = ds_value(position[2])
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = stored.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    for key, value in (extra or {}).items():
        setattr(ds, key, value)
    ds.PixelData = stored.astype("<u2").tobytes()
    return ds


CT_EXTRA = {"KVP": "120", "RescaleIntercept": "-1024", "RescaleSlope": "1", "RescaleType": "HU",
            "WindowCenter": "40", "WindowWidth": "400", "ConvolutionKernel": "STANDARD"}


def ct_series(name, series_number, slices, rng):
    """slices: (position, orientation) in spatial order. Instance Numbers run head to feet, as a
    head-first scan numbers them (so for axial stacks they are the reverse of spatial order)."""
    series_uid = uid(f"{name} series")
    datasets, lesions = [], []
    order = sorted(range(len(slices)), key=lambda i: (slices[i][1] != AXIAL, -slices[i][0][2]))
    instance_of = {i: n + 1 for n, i in enumerate(order)}
    for index, (position, orientation) in enumerate(slices):
        points = pixel_points(position, orientation, CT_SPACING, CT_SIZE, CT_SIZE)
        hu, lesion = ct_hu(points, rng)
        stored = np.clip(np.round(hu + 1024), 0, 4095)
        sop_uid = uid(f"{name} instance {index}")
        datasets.append(classic_slice(CT_IMAGE, "CT", series_uid, series_number, sop_uid,
                                      instance_of[index], position, orientation, CT_SPACING,
                                      CT_THICKNESS, stored, extra=CT_EXTRA))
        lesions.append(lesion)
    return series_uid, datasets, np.stack(lesions).astype(np.uint8)


def write_shuffled(folder, datasets, rng):
    """Writes in a shuffled order under hashed names (neither the names nor the file times say
    anything about the order)."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [None] * len(datasets)
    for i in rng.permutation(len(datasets)):
        names[i] = file_name(datasets[i].SOPInstanceUID)
        datasets[i].save_as(folder / names[i], enforce_file_format=True)
    return names


def stack_entry(datasets, names, orientation):
    positions = [np.array(d.ImagePositionPatient, float) for d in datasets]
    along = [float(p @ normal(orientation)) for p in positions]
    steps = np.round(np.diff(along), 6).tolist()
    return {
        "orientation": list(orientation),
        "normal": normal(orientation).tolist(),
        "slices": len(datasets),
        "slice_order": [d.SOPInstanceUID for d in datasets],
        "files_in_order": names,
        "instance_numbers_in_order": [int(d.InstanceNumber) for d in datasets],
        "positions": [p.tolist() for p in positions],
        "pixel_spacing": [float(v) for v in datasets[0].PixelSpacing],
        "slice_thickness": float(datasets[0].SliceThickness),
        "spacing_between_slices": steps[0] if len(set(steps)) == 1 else None,
        "steps": steps,
        "regular": len(set(steps)) == 1,
    }


# --- dciodvfy ----------------------------------------------------------------------------------
def dciodvfy(path):
    """dciodvfy's Error and Warning lines (it prints them on stderr)."""
    done = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    lines = (done.stdout + done.stderr).splitlines()
    return ([line for line in lines if line.startswith("Error")],
            sorted({line for line in lines if line.startswith("Warning")}))


manifest = {"spatial_order": "ascending along the slice normal (row direction x column direction)",
            "fixtures": {}, "dciodvfy": []}
rng = np.random.default_rng(20260101)

# --- a. ct_sphere: 24 axial slices, a 12 mm sphere, and its ground truth -----------------------
CT_SIZE, CT_SPACING, CT_THICKNESS, CT_STEP = 128, (0.8, 0.8), 2.5, 2.5
CT_ORIGIN = np.array([-51.0, -45.5, -100.0])
slices = [(CT_ORIGIN + [0, 0, k * CT_STEP], AXIAL) for k in range(24)]
series_uid, datasets, truth = ct_series("ct_sphere", 3, slices, rng)
names = write_shuffled(out / "ct_sphere", datasets, rng)
np.save(out / "ct_sphere_truth.npy", truth)
voxels = int(truth.sum())

seg = truth_seg(datasets, truth, "ct_sphere", 901,
                content_description="exact sphere mask (voxel centres within the radius)")
seg.save_as(out / "ct_sphere_seg.dcm")

manifest["fixtures"]["ct_sphere"] = {
    "path": "ct_sphere",
    "series_instance_uid": series_uid,
    "sop_class": CT_IMAGE,
    "instances": len(datasets),
    "frames": len(datasets),
    "rows": CT_SIZE, "columns": CT_SIZE,
    "stored": "uint16, 12 bits stored; HU = stored - 1024 (Rescale Slope 1, Intercept -1024)",
    "instance_numbers": "head to feet: instance 1 is the most superior slice (highest z), so "
                        "spatial order is descending Instance Number",
    "expected_stacks": [stack_entry(datasets, names, AXIAL)],
    "sphere": {
        "center_lps_mm": SPHERE_CENTER.tolist(),
        "radius_mm": SPHERE_RADIUS,
        "hu_inside": 300, "hu_body": 40, "hu_air": -1000,
        "voxel_count": voxels,
        "volume_ml": round(voxels * CT_SPACING[0] * CT_SPACING[1] * CT_STEP / 1000, 6),
        "analytic_volume_ml": round(4 / 3 * np.pi * SPHERE_RADIUS ** 3 / 1000, 6),
        "slices_with_lesion": [int(k) for k in np.flatnonzero(truth.any(axis=(1, 2)))],
    },
    "truth": "ct_sphere_truth.npy",
    "truth_layout": "(slice, row, column) uint8 in spatial order (ascending z)",
    "seg": {
        "file": "ct_sphere_seg.dcm",
        "sop_instance_uid": seg.SOPInstanceUID,
        "frames": int(seg.NumberOfFrames),
        "note": "highdicom, BINARY, one segment; empty frames omitted, so it has one frame "
                "per slice with lesion",
    },
}

# --- b. enhanced_mr.dcm: 176 sagittal frames, stored in shuffled spatial order -----------------
MR_FRAMES, MR_SIZE, MR_SPACING, MR_THICKNESS = 176, 128, (2.0, 2.0), 1.0


def mr_positions():
    """Sagittal slices 1 mm apart; the normal of SAGITTAL is -x, so spatial order is descending x."""
    return [np.array([87.5 - s * MR_THICKNESS, -127.0, 127.0]) for s in range(MR_FRAMES)]


def mr_volume(rng):
    frames, lesions = [], []
    for position in mr_positions():
        value, lesion = mr_signal(pixel_points(position, SAGITTAL, MR_SPACING, MR_SIZE, MR_SIZE), rng)
        frames.append(np.round(value).astype(np.uint16))
        lesions.append(lesion)
    return np.stack(frames), np.stack(lesions).astype(np.uint8)


def code_item(value, scheme, meaning):
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def seq_of(**attributes):
    item = Dataset()
    for key, value in attributes.items():
        setattr(item, key, value)
    return Sequence([item])


def enhanced_mr(volume, storage_order):
    """Enhanced MR Image Storage, built with pydicom: frame f holds spatial slice storage_order[f];
    its Plane Position and In-Stack Position Number say where it belongs."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = ENHANCED_MR_IMAGE
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid("enhanced_mr instance")
    common(ds, "MR", uid("enhanced_mr series"), 5, study="mr study", patient="EFEN-SERIES-2")
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = "20260101", "121000"
    ds.AcquisitionNumber = 1
    ds.AcquisitionDateTime = "20260101120600"
    ds.AcquisitionDuration = 300.0
    # Enhanced MR Image module and its MR Image Description macro.
    ds.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
    ds.PixelPresentation = "MONOCHROME"
    ds.VolumetricProperties = "VOLUME"
    ds.VolumeBasedCalculationTechnique = "NONE"
    ds.ComplexImageComponent = "MAGNITUDE"
    ds.AcquisitionContrast = "T1"
    ds.ContentQualification = "PRODUCT"
    ds.ResonantNucleus = "1H"
    ds.KSpaceFiltering = "NONE"
    ds.MagneticFieldStrength = 3.0
    ds.ApplicableSafetyStandardAgency = "IEC"
    ds.ImageComments = "efen fixture: frames stored in shuffled spatial order"
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.PresentationLUTShape = "IDENTITY"
    # MR Pulse Sequence module (a 3D spoiled gradient echo).
    ds.PulseSequenceName = "T1_3D_GRE"
    ds.MRAcquisitionType = "3D"
    ds.EchoPulseSequence = "GRADIENT"
    ds.MultiPlanarExcitation = "NO"
    ds.PhaseContrast = "NO"
    ds.TimeOfFlightContrast = "NO"
    ds.SteadyStatePulseSequence = "NONE"
    ds.EchoPlanarPulseSequence = "NO"
    ds.SaturationRecovery = "NO"
    ds.SpectrallySelectedSuppression = "NONE"
    ds.OversamplingPhase = "NONE"
    ds.GeometryOfKSpaceTraversal = "RECTILINEAR"
    ds.RectilinearPhaseEncodeReordering = "LINEAR"
    ds.SegmentedKSpaceTraversal = "SINGLE"
    ds.CoverageOfKSpace = "FULL"
    ds.NumberOfKSpaceTrajectories = 1
    # Image Pixel.
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.NumberOfFrames = len(storage_order)
    ds.Rows, ds.Columns = MR_SIZE, MR_SIZE
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.AcquisitionContextSequence = Sequence()
    # Multi-frame Dimension: stack, then position in the stack.
    organization = uid("enhanced_mr dimension organization")
    ds.DimensionOrganizationSequence = seq_of(DimensionOrganizationUID=organization)
    ds.DimensionOrganizationType = "3D"
    dimensions = []
    for pointer, label in ((0x00209056, "Stack ID"), (0x00209057, "In-Stack Position Number")):
        item = Dataset()
        item.DimensionOrganizationUID = organization
        item.DimensionIndexPointer = pointer
        item.FunctionalGroupPointer = 0x00209111  # Frame Content Sequence
        item.DimensionDescriptionLabel = label
        dimensions.append(item)
    ds.DimensionIndexSequence = Sequence(dimensions)

    shared = Dataset()
    shared.PixelMeasuresSequence = seq_of(PixelSpacing=ds_list(MR_SPACING), SliceThickness=MR_THICKNESS,
                                          SpacingBetweenSlices=MR_THICKNESS)
    shared.PlaneOrientationSequence = seq_of(ImageOrientationPatient=ds_list(SAGITTAL))
    shared.FrameAnatomySequence = seq_of(
        AnatomicRegionSequence=Sequence([code_item("12738006", "SCT", "Brain")]), FrameLaterality="B")
    shared.MRImageFrameTypeSequence = seq_of(
        FrameType=["ORIGINAL", "PRIMARY", "VOLUME", "NONE"], PixelPresentation="MONOCHROME",
        VolumetricProperties="VOLUME", VolumeBasedCalculationTechnique="NONE",
        ComplexImageComponent="MAGNITUDE", AcquisitionContrast="T1")
    shared.MRTimingAndRelatedParametersSequence = seq_of(
        RepetitionTime=7.6, FlipAngle=8.0, EchoTrainLength=1, RFEchoTrainLength=0,
        GradientEchoTrainLength=1,
        SpecificAbsorptionRateSequence=seq_of(SpecificAbsorptionRateDefinition="IEC_WHOLE_BODY",
                                              SpecificAbsorptionRateValue=0.5),
        GradientOutputType="DB_DT", GradientOutput=50.0,
        OperatingModeSequence=seq_of(OperatingModeType="STATIC FIELD", OperatingMode="IEC_NORMAL"))
    shared.MRFOVGeometrySequence = seq_of(
        InPlanePhaseEncodingDirection="ROW", MRAcquisitionFrequencyEncodingSteps=MR_SIZE,
        MRAcquisitionPhaseEncodingStepsInPlane=MR_SIZE,
        MRAcquisitionPhaseEncodingStepsOutOfPlane=MR_FRAMES,
        PercentSampling=100.0, PercentPhaseFieldOfView=100.0)
    shared.PixelValueTransformationSequence = seq_of(RescaleIntercept=0, RescaleSlope=1, RescaleType="US")
    shared.MREchoSequence = seq_of(EffectiveEchoTime=3.1)
    shared.MRModifierSequence = seq_of(
        InversionRecovery="NO", FlowCompensation="NONE", T2Preparation="NO",
        SpectrallySelectedExcitation="NONE", SpatialPresaturation="NONE",
        PartialFourier="NO", ParallelAcquisition="NO")
    shared.MRImagingModifierSequence = seq_of(
        MagnetizationTransfer="NONE", BloodSignalNulling="NO", Tagging="NONE",
        TransmitterFrequency=127.7, PixelBandwidth=240.0)
    shared.MRReceiveCoilSequence = seq_of(
        ReceiveCoilName="HEAD 32", ReceiveCoilManufacturerName="efen", ReceiveCoilType="MULTICOIL",
        QuadratureReceiveCoil="NO", MultiCoilDefinitionSequence=seq_of(
            MultiCoilElementName="ALL", MultiCoilElementUsed="YES"))
    shared.MRTransmitCoilSequence = seq_of(
        TransmitCoilName="BODY", TransmitCoilManufacturerName="efen", TransmitCoilType="BODY")
    shared.MRAveragesSequence = seq_of(NumberOfAverages=1.0)
    ds.SharedFunctionalGroupsSequence = Sequence([shared])

    positions = mr_positions()
    per_frame = []
    for spatial in storage_order:
        item = Dataset()
        content = Dataset()
        content.FrameReferenceDateTime = "20260101120600"
        content.FrameAcquisitionDateTime = "20260101120600"
        content.FrameAcquisitionDuration = 300000.0  # ms
        content.StackID = "1"
        content.InStackPositionNumber = int(spatial) + 1
        content.DimensionIndexValues = [1, int(spatial) + 1]
        item.FrameContentSequence = Sequence([content])
        item.PlanePositionSequence = seq_of(ImagePositionPatient=ds_list(positions[spatial]))
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.PixelData = volume[storage_order].astype("<u2").tobytes()
    return ds


mr_stored, mr_lesion = mr_volume(rng)
mr_order = rng.permutation(MR_FRAMES)  # frame f (from 0) holds spatial slice mr_order[f]
mr = enhanced_mr(mr_stored, mr_order)
mr.save_as(out / "enhanced_mr.dcm", enforce_file_format=True)
np.save(out / "enhanced_mr_volume.npy", mr_stored)
frame_order = [int(f) + 1 for f in np.argsort(mr_order)]  # frame numbers in spatial order

# A highdicom SEG over the enhanced MR (frames referenced by number), for the multi-frame path.
mr_seg = truth_seg([mr], mr_lesion[mr_order], "enhanced_mr", 902)  # in the source's frame order
mr_seg.save_as(out / "enhanced_mr_seg.dcm")
np.save(out / "enhanced_mr_truth.npy", mr_lesion)
mr_voxels = int(mr_lesion.sum())

manifest["fixtures"]["enhanced_mr"] = {
    "path": "enhanced_mr.dcm",
    "series_instance_uid": mr.SeriesInstanceUID,
    "sop_instance_uid": mr.SOPInstanceUID,
    "sop_class": ENHANCED_MR_IMAGE,
    "instances": 1,
    "frames": MR_FRAMES,
    "rows": MR_SIZE, "columns": MR_SIZE,
    "stored": "uint16, 12 bits stored, no rescale",
    "frame_storage": "shuffled: frame numbers are not in spatial order; Plane Position and "
                     "In-Stack Position Number (1 = first in spatial order) place each frame",
    "expected_stacks": [{
        "orientation": list(SAGITTAL),
        "normal": normal(SAGITTAL).tolist(),
        "slices": MR_FRAMES,
        "frame_order": frame_order,
        "positions": [p.tolist() for p in mr_positions()],
        "pixel_spacing": list(MR_SPACING),
        "slice_thickness": MR_THICKNESS,
        "spacing_between_slices": MR_THICKNESS,
        "regular": True,
    }],
    "volume": "enhanced_mr_volume.npy",
    "volume_layout": "(slice, row, column) uint16 stored values in spatial order",
    "sphere": {
        "center_lps_mm": MR_LESION_CENTER.tolist(),
        "radius_mm": MR_LESION_RADIUS,
        "voxel_count": mr_voxels,
        "volume_ml": round(mr_voxels * MR_SPACING[0] * MR_SPACING[1] * MR_THICKNESS / 1000, 6),
    },
    "truth": "enhanced_mr_truth.npy",
    "truth_layout": "(slice, row, column) uint8 in spatial order",
    "seg": {
        "file": "enhanced_mr_seg.dcm",
        "sop_instance_uid": mr_seg.SOPInstanceUID,
        "frames": int(mr_seg.NumberOfFrames),
        "note": "highdicom over the multi-frame source: references by Referenced Frame Number",
    },
}

# --- c. two_orientations: one series, 6 axial + 6 coronal slices -------------------------------
axial = [(CT_ORIGIN + [0, 0, 30 + k * 5.0], AXIAL) for k in range(6)]
coronal = [(np.array([-51.0, -20.0 + k * 8.0, -30.0]), CORONAL) for k in range(6)]
series_uid, datasets, lesions = ct_series("two_orientations", 4, axial + coronal, rng)
names = write_shuffled(out / "two_orientations", datasets, rng)
np.save(out / "two_orientations_truth_0.npy", lesions[:6])
np.save(out / "two_orientations_truth_1.npy", lesions[6:])
manifest["fixtures"]["two_orientations"] = {
    "path": "two_orientations",
    "series_instance_uid": series_uid,
    "sop_class": CT_IMAGE,
    "instances": len(datasets),
    "frames": len(datasets),
    "rows": CT_SIZE, "columns": CT_SIZE,
    "note": "one Series Instance UID and Frame of Reference, two Image Orientations: two stacks",
    "expected_stacks": [stack_entry(datasets[:6], names[:6], AXIAL),
                        stack_entry(datasets[6:], names[6:], CORONAL)],
    "truth": ["two_orientations_truth_0.npy", "two_orientations_truth_1.npy"],
    "truth_layout": "per stack, (slice, row, column) uint8 in spatial order; the sphere of ct_sphere",
}

# --- d. gap: 12 axial slices of a 13-slice grid, the 7th missing -------------------------------
grid = [(CT_ORIGIN + [0, 0, 20 + k * CT_STEP], AXIAL) for k in range(13)]
missing = 6
series_uid, datasets, lesions = ct_series("gap", 6, grid[:missing] + grid[missing + 1:], rng)
names = write_shuffled(out / "gap", datasets, rng)
np.save(out / "gap_truth.npy", lesions)
entry = stack_entry(datasets, names, AXIAL)
manifest["fixtures"]["gap"] = {
    "path": "gap",
    "series_instance_uid": series_uid,
    "sop_class": CT_IMAGE,
    "instances": len(datasets),
    "frames": len(datasets),
    "rows": CT_SIZE, "columns": CT_SIZE,
    "note": f"slice {missing} (from 0) of a regular {CT_STEP} mm grid is missing: one step of "
            f"{2 * CT_STEP} mm between spatial positions {missing - 1} and {missing}",
    "missing_position": (CT_ORIGIN + [0, 0, 20 + missing * CT_STEP]).tolist(),
    "expected_stacks": [entry],
    "truth": "gap_truth.npy",
    "truth_layout": "(slice, row, column) uint8 of the 12 slices present, in spatial order; the "
                    "sphere of ct_sphere (the missing slice cuts through it)",
}
assert not entry["regular"]

# --- e. ct_4d: 3 time points x 10 axial positions, told apart only by Acquisition Number ----------
positions = [(CT_ORIGIN + [0, 0, 30 + k * CT_STEP], AXIAL) for k in range(10)]
series_uid, datasets, _ = ct_series("ct_4d", 7, positions * 3, rng)
for k, ds in enumerate(datasets):
    ds.AcquisitionNumber = k // 10 + 1
    ds.AcquisitionTime = f"1205{k // 10:02d}"
    ds.InstanceNumber = k + 1
names = write_shuffled(out / "ct_4d", datasets, rng)
manifest["fixtures"]["ct_4d"] = {
    "path": "ct_4d",
    "series_instance_uid": series_uid,
    "instances": len(datasets),
    "time_points": 3,
    "positions": 10,
    "note": "no Temporal Position Identifier: the time points differ only in Acquisition Number "
            "(and Acquisition Time); each position appears once per time point",
}

# --- f. tilt: 12 axial slices whose positions lean 11.3 degrees towards +y (a gantry tilt) -------
tilted = [(CT_ORIGIN + [0, 0.5 * k, 20 + k * CT_STEP], AXIAL) for k in range(12)]
series_uid, datasets, _ = ct_series("tilt", 8, tilted, rng)
for ds in datasets:
    ds.GantryDetectorTilt = "11.3"
names = write_shuffled(out / "tilt", datasets, rng)
manifest["fixtures"]["tilt"] = {
    "path": "tilt",
    "series_instance_uid": series_uid,
    "instances": len(datasets),
    "slice_step_mm": [0.0, 0.5, CT_STEP],
    "note": "axial images whose positions step 0.5 mm in y per 2.5 mm in z: the slice axis is not "
            "the normal, so a volume's affine is sheared",
}

# --- g. with_localizer: 12 axial slices and one coronal localizer, all in one series ------------
axial = [(CT_ORIGIN + [0, 0, 20 + k * CT_STEP], AXIAL) for k in range(12)]
scout = [(np.array([-51.0, 0.0, 0.0]), CORONAL)]
series_uid, datasets, _ = ct_series("with_localizer", 9, axial + scout, rng)
datasets[-1].ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
names = write_shuffled(out / "with_localizer", datasets, rng)
manifest["fixtures"]["with_localizer"] = {
    "path": "with_localizer",
    "series_instance_uid": series_uid,
    "instances": len(datasets),
    "localizer_sop_instance_uid": datasets[-1].SOPInstanceUID,
    "note": "12 axial images and one coronal image whose Image Type is ORIGINAL\\PRIMARY\\LOCALIZER",
}

# --- h. unnormalised: 6 slices whose column direction is 0.9995 long, as a private MR wrote it -----
# (0, 0.98796, -0.151524); dciodvfy rightly flags the source, and efen must not copy it into a SEG.
slices = [(CT_ORIGIN + [0, 0, 20 + k * CT_STEP], AXIAL) for k in range(6)]
series_uid, datasets, _ = ct_series("unnormalised", 10, slices, rng)
for ds in datasets:
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "0.98796", "-0.151524"]
names = write_shuffled(out / "unnormalised", datasets, rng)
manifest["fixtures"]["unnormalised"] = {
    "path": "unnormalised",
    "series_instance_uid": series_uid,
    "instances": len(datasets),
    "note": "Image Orientation (Patient) 1\\0\\0\\0\\0.98796\\-0.151524: the column direction "
            "is 0.99951 long, not 1 (a rounding seen in a private MR)",
}
# The source errors a fixture carries on purpose: recorded, not a failed build.
EXPECTED_SOURCE_ERRORS = {"unnormalised": "Orientation vector is not unit vector"}

# --- dciodvfy: every file; an Error fails the build, Warnings are recorded ----------------------
verdicts = {}
with ThreadPoolExecutor() as pool:
    files = sorted(out.rglob("*.dcm"))
    for path, (errors, warns) in zip(files, pool.map(dciodvfy, files)):
        group = path.relative_to(out).parts[0]
        verdict = verdicts.setdefault(group, {"files": 0, "errors": [], "warnings": set()})
        verdict["files"] += 1
        expected = EXPECTED_SOURCE_ERRORS.get(group)
        verdict["errors"] += [f"{path.name}: {line}" for line in errors if not (expected and expected in line)]
        verdict["warnings"] |= set(warns)
manifest["dciodvfy"] = {group: {**v, "warnings": sorted(v["warnings"])} for group, v in verdicts.items()}

(out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
for group, verdict in manifest["dciodvfy"].items():
    print(f"series-fixtures: dciodvfy {group}: {verdict['files']} files, {len(verdict['errors'])} errors, "
          f"{len(verdict['warnings'])} distinct warnings")
    for line in verdict["errors"] + verdict["warnings"]:
        print(f"  {line}")
print(f"series-fixtures: built in {time.monotonic() - started:.1f} s")
if any(v["errors"] for v in verdicts.values()):
    sys.exit("series-fixtures: dciodvfy reports errors (see above)")
