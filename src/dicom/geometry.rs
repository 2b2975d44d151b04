//! Where slices lie, and how a series falls into stacks: what a DICOM series case is made of.
//!
//! Each slice (a classic instance, or one frame of an enhanced multi-frame object) has a plane:
//! Image Position and Orientation (Patient) and Pixel Spacing, read from the frame's own functional
//! groups, then the shared ones, then the top level. Slices that differ in orientation, size, or
//! temporal/echo/diffusion position are different stacks; so are slices that repeat positions and
//! differ in Acquisition Number, Trigger Time or Acquisition Time (a 4D acquisition told apart only
//! by those). Within a stack, slices are ordered by their distance along the slice normal (row
//! direction × column direction), else by Instance Number; a slice at the position of another is
//! left out (as dcm2niix does); irregular spacing, a gap and a gantry tilt become warnings.

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use super::DicomFile;
use super::read::{floats, string};

/// Positions closer than this along the normal are the same position (mm).
const SAME_POSITION_MM: f64 = 0.01;
/// A step this many times the typical one is a gap (a missing slice).
const GAP_FACTOR: f64 = 1.5;
/// Steps that differ from the typical one by more than this fraction are irregular.
const IRREGULAR_FRACTION: f64 = 0.1;
/// Between the slice normal and the line through the positions, more than this is a tilt.
const TILT_DEGREES: f64 = 0.5;
/// Direction cosines whose vector is this close to unit length are taken as they are (dciodvfy
/// accepts 1e-5 off, not 1e-4).
const UNIT_LENGTH: f64 = 1e-5;
/// Up to this far from unit length (a rounding in a vendor's export, seen: 0.99951), they are
/// normalised with a warning; further, the slice has no usable geometry.
const NORMALISABLE_LENGTH: f64 = 0.02;

/// Image Orientation (Patient) with each direction of unit length: as it is, normalised when it
/// is off by a rounding (`Ok((orientation, true))`), or refused with the lengths it has.
pub(crate) fn unit_orientation(orientation: [f64; 6]) -> Result<([f64; 6], bool), String> {
    let length = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let (row, column) = (length(&orientation[..3]), length(&orientation[3..]));
    let off = (row - 1.0).abs().max((column - 1.0).abs());
    if off <= UNIT_LENGTH {
        return Ok((orientation, false));
    }
    if off > NORMALISABLE_LENGTH {
        return Err(format!("direction cosines of length {row:.5} and {column:.5}, not 1"));
    }
    let normalised = std::array::from_fn(|k| orientation[k] / if k < 3 { row } else { column });
    Ok((normalised, true))
}

/// Where one slice lies.
#[derive(Debug, Clone, PartialEq)]
pub struct SlicePlane {
    /// Image Position (Patient): the centre of the first pixel, in mm (LPS).
    pub position: [f64; 3],
    /// Image Orientation (Patient): the direction of the rows (along which the column index
    /// grows), then of the columns.
    pub orientation: [f64; 6],
    /// Pixel Spacing: between rows, then between columns, in mm.
    pub spacing: [f64; 2],
    pub thickness: Option<f64>,
}

impl SlicePlane {
    pub fn normal(&self) -> [f64; 3] {
        let (r, c) = (&self.orientation[..3], &self.orientation[3..]);
        [r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0]]
    }
}

/// What grouping and ordering need to know of one slice.
#[derive(Debug, Clone, PartialEq)]
pub struct SliceHeader {
    /// None when the slice has no usable geometry.
    pub plane: Option<SlicePlane>,
    pub instance_number: Option<i64>,
    pub rows: u32,
    pub columns: u32,
    /// Temporal position, echo or diffusion b-value: slices that differ here are different stacks.
    pub dimension: Option<String>,
    /// The SOP Instance UID of the object the slice is a frame of: frames of one object at one
    /// position are a time series of it, never duplicates.
    pub instance: Option<String>,
    /// Acquisition Number, Trigger Time, Acquisition Time (in that order, None when absent): what
    /// tells the time points of a 4D acquisition apart when nothing else does. They split a stack
    /// only where its positions repeat.
    pub acquisition: [Option<String>; 3],
    /// Its orientation was off unit length by a rounding and is normalised in `plane`.
    pub normalised: bool,
}

/// The names of [`SliceHeader::acquisition`]'s values, for what a stack is told.
const ACQUISITION: [&str; 3] = ["acquisition", "trigger time", "acquisition time"];

impl SliceHeader {
    /// The header of frame `frame` (0-based) of `file`.
    pub fn of(file: &DicomFile, frame: u32) -> SliceHeader {
        let obj = file.object();
        let groups = FrameGroups::of(obj, frame);
        let plane = (|| {
            let position: [f64; 3] =
                groups.floats(tags::PLANE_POSITION_SEQUENCE, tags::IMAGE_POSITION_PATIENT).try_into().ok()?;
            let orientation: [f64; 6] =
                groups.floats(tags::PLANE_ORIENTATION_SEQUENCE, tags::IMAGE_ORIENTATION_PATIENT).try_into().ok()?;
            let spacing: [f64; 2] =
                groups.floats(tags::PIXEL_MEASURES_SEQUENCE, tags::PIXEL_SPACING).try_into().ok()?;
            let thickness = groups.floats(tags::PIXEL_MEASURES_SEQUENCE, tags::SLICE_THICKNESS).first().copied();
            let (orientation, normalised) = unit_orientation(orientation).ok()?;
            let plane = SlicePlane { position, orientation, spacing, thickness: thickness.filter(|t| *t > 0.0) };
            spacing.iter().all(|s| *s > 0.0).then_some((plane, normalised))
        })();
        let (plane, normalised) = match plane {
            Some((plane, normalised)) => (Some(plane), normalised),
            None => (None, false),
        };
        let instance_number = string(obj, tags::INSTANCE_NUMBER).and_then(|s| s.parse::<f64>().ok()).map(|n| n as i64);
        let dimension = [
            ("temporal position", groups.text(tags::FRAME_CONTENT_SEQUENCE, tags::TEMPORAL_POSITION_INDEX)),
            ("temporal position", string(obj, tags::TEMPORAL_POSITION_IDENTIFIER)),
            ("echo", groups.text(tags::MR_ECHO_SEQUENCE, tags::EFFECTIVE_ECHO_TIME)),
            ("echo", string(obj, tags::ECHO_NUMBERS)),
            ("b-value", groups.text(tags::MR_DIFFUSION_SEQUENCE, tags::DIFFUSION_B_VALUE)),
            ("b-value", string(obj, tags::DIFFUSION_B_VALUE)),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| format!("{name} {v}")))
        .collect::<Vec<_>>();
        let acquisition = [
            string(obj, tags::ACQUISITION_NUMBER),
            groups
                .text(tags::CARDIAC_SYNCHRONIZATION_SEQUENCE, tags::NOMINAL_CARDIAC_TRIGGER_DELAY_TIME)
                .or_else(|| string(obj, tags::TRIGGER_TIME)),
            groups
                .text(tags::FRAME_CONTENT_SEQUENCE, tags::FRAME_ACQUISITION_DATE_TIME)
                .or_else(|| string(obj, tags::ACQUISITION_TIME)),
        ];
        SliceHeader {
            plane,
            instance_number,
            rows: file.rows(),
            columns: file.columns(),
            dimension: (!dimension.is_empty()).then(|| dimension.join(", ")),
            instance: string(obj, tags::SOP_INSTANCE_UID),
            acquisition,
            normalised,
        }
    }
}

/// A frame's functional groups: its own item of the Per-frame Functional Groups Sequence and the
/// Shared one (enhanced objects), with the top level of the object as the last resort.
pub(crate) struct FrameGroups<'a> {
    per_frame: Option<&'a InMemDicomObject>,
    shared: Option<&'a InMemDicomObject>,
    top: &'a InMemDicomObject,
}

impl<'a> FrameGroups<'a> {
    pub(crate) fn of(obj: &'a InMemDicomObject, frame: u32) -> FrameGroups<'a> {
        let items = |tag| obj.get(tag).and_then(|e| e.value().items());
        FrameGroups {
            per_frame: items(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE).and_then(|i| i.get(frame as usize)),
            shared: items(tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE).and_then(|i| i.first()),
            top: obj,
        }
    }

    /// The first item of `group` in the frame's groups, then in the shared ones.
    fn items(&self, group: Tag) -> impl Iterator<Item = &'a InMemDicomObject> {
        [self.per_frame, self.shared]
            .into_iter()
            .flatten()
            .filter_map(move |g| g.get(group).and_then(|e| e.value().items()).and_then(|i| i.first()))
    }

    /// `tag` from the functional group `group`, else from the top level; empty when absent or
    /// unreadable.
    pub(crate) fn floats(&self, group: Tag, tag: Tag) -> Vec<f64> {
        self.items(group)
            .map(|item| floats(item, tag).unwrap_or_default())
            .find(|v| !v.is_empty())
            .unwrap_or_else(|| floats(self.top, tag).unwrap_or_default())
    }

    fn text(&self, group: Tag, tag: Tag) -> Option<String> {
        self.items(group).find_map(|item| string(item, tag))
    }
}

/// Slices of one series that belong together, in spatial order.
#[derive(Debug, Clone, PartialEq)]
pub struct Stack {
    /// Indices into the headers given to [`stacks`], in spatial order.
    pub slices: Vec<usize>,
    /// What sets this stack apart from the series' others (None when the series is one stack).
    pub distinct: Option<String>,
    /// The typical distance between neighbouring slices along the normal, in mm.
    pub spacing: Option<f64>,
    /// Geometry problems that do not stop the case: gaps, irregular spacing, duplicates, tilt.
    pub warnings: Vec<String>,
    /// Indices of slices left out: at the position of another slice of the stack.
    pub left_out: Vec<usize>,
}

/// Splits a series' slices into stacks (by orientation, size and temporal/echo/diffusion
/// position; then, where positions repeat, by acquisition) and orders each along its normal.
/// Stacks come in the order of their first slice.
pub fn stacks(headers: &[SliceHeader]) -> Vec<Stack> {
    let mut groups: Vec<(StackKey, Vec<usize>)> = Vec::new();
    for (i, header) in headers.iter().enumerate() {
        let key = StackKey::of(header);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(i),
            None => groups.push((key, vec![i])),
        }
    }
    let groups: Vec<(StackKey, Vec<usize>)> =
        groups.into_iter().flat_map(|(key, members)| split_by_acquisition(headers, key, members)).collect();
    let split = groups.len() > 1;
    groups
        .into_iter()
        .map(|(key, members)| {
            let mut stack = order(headers, members);
            stack.distinct = split.then(|| key.describe());
            stack
        })
        .collect()
}

/// A group whose positions repeat, split by the first acquisition attribute that every slice has,
/// that takes more than one value, and under which no position repeats (a 4D CT of 3 time points
/// × 10 positions told apart only by Acquisition Number is 3 stacks of 10). Otherwise the group
/// as it is: its repeated positions are left out when it is ordered.
fn split_by_acquisition(headers: &[SliceHeader], key: StackKey, members: Vec<usize>) -> Vec<(StackKey, Vec<usize>)> {
    if !repeats_positions(headers, &members) {
        return vec![(key, members)];
    }
    for (a, name) in ACQUISITION.iter().enumerate() {
        let values: Option<Vec<&String>> = members.iter().map(|&i| headers[i].acquisition[a].as_ref()).collect();
        let Some(values) = values else { continue };
        let mut parts: Vec<(&String, Vec<usize>)> = Vec::new();
        for (&i, value) in members.iter().zip(values) {
            match parts.iter_mut().find(|(v, _)| *v == value) {
                Some((_, part)) => part.push(i),
                None => parts.push((value, vec![i])),
            }
        }
        // Time points of a few slices each, not one value per slice (an Acquisition Time that
        // differs from slice to slice tells no time points apart).
        let time_points = parts.len() > 1 && parts.iter().all(|(_, part)| part.len() >= 2);
        if time_points && parts.iter().all(|(_, part)| !repeats_positions(headers, part)) {
            return parts
                .into_iter()
                .map(|(value, part)| {
                    let mut key = key.clone();
                    let told = format!("{name} {value}");
                    key.dimension = Some(key.dimension.map_or(told.clone(), |d| format!("{d}, {told}")));
                    (key, part)
                })
                .collect();
        }
    }
    vec![(key, members)]
}

/// Whether two of `members` lie at one position along their normal.
fn repeats_positions(headers: &[SliceHeader], members: &[usize]) -> bool {
    let planes: Option<Vec<&SlicePlane>> = members.iter().map(|&i| headers[i].plane.as_ref()).collect();
    let Some(planes) = planes.filter(|p| p.len() > 1) else { return false };
    let normal = planes[0].normal();
    let mut along: Vec<f64> = planes.iter().map(|p| dot(&p.position, &normal)).collect();
    along.sort_by(f64::total_cmp);
    along.windows(2).any(|w| w[1] - w[0] < SAME_POSITION_MM)
}

/// What tells stacks apart. Orientations are compared to 1e-3 (a rounding difference between
/// slices of one acquisition is not a new stack).
#[derive(Debug, Clone, PartialEq)]
struct StackKey {
    orientation: Option<[i64; 6]>,
    size: (u32, u32),
    dimension: Option<String>,
}

impl StackKey {
    fn of(header: &SliceHeader) -> StackKey {
        StackKey {
            orientation: header.plane.as_ref().map(|p| p.orientation.map(|v| (v * 1000.0).round() as i64)),
            size: (header.rows, header.columns),
            dimension: header.dimension.clone(),
        }
    }

    fn describe(&self) -> String {
        let orientation = match &self.orientation {
            Some(o) => o.iter().map(|v| format!("{}", *v as f64 / 1000.0)).collect::<Vec<_>>().join("\\"),
            None => "none".into(),
        };
        let mut text = format!("orientation {orientation}, {}×{}", self.size.1, self.size.0);
        if let Some(dimension) = &self.dimension {
            text += &format!(", {dimension}");
        }
        text
    }
}

/// Orders one stack's slices and checks their spacing.
fn order(headers: &[SliceHeader], mut members: Vec<usize>) -> Stack {
    let instance = |i: usize| headers[i].instance_number.unwrap_or(i64::MAX);
    let planes: Option<Vec<&SlicePlane>> = members.iter().map(|&i| headers[i].plane.as_ref()).collect();
    let Some(planes) = planes else {
        members.sort_by_key(|&i| (instance(i), i));
        let warning =
            "no usable geometry (Image Position/Orientation (Patient), Pixel Spacing): ordered by Instance Number";
        return Stack {
            slices: members,
            distinct: None,
            spacing: None,
            warnings: vec![warning.into()],
            left_out: vec![],
        };
    };
    let normal = planes[0].normal();
    let along = |i: usize| dot(&headers[i].plane.as_ref().expect("every slice has a plane").position, &normal);
    members.sort_by(|&a, &b| along(a).total_cmp(&along(b)).then(instance(a).cmp(&instance(b))));
    // A duplicate, another object at the position of the slice before it and acquired alike, is
    // left out: the first (lowest Instance Number) stays, as dcm2niix keeps one. Slices at one
    // position that differ in their acquisition (single-frame time points), or frames of one
    // object (its own time series), stay, with a warning.
    let mut left_out = Vec::new();
    let mut kept: Vec<usize> = Vec::with_capacity(members.len());
    for i in members {
        match kept.last() {
            Some(&last)
                if along(i) - along(last) < SAME_POSITION_MM
                    && headers[i].acquisition == headers[last].acquisition
                    && (headers[i].instance.is_none() || headers[i].instance != headers[last].instance) =>
            {
                left_out.push(i)
            }
            _ => kept.push(i),
        }
    }
    let positions: Vec<[f64; 3]> = kept.iter().map(|&i| headers[i].plane.as_ref().expect("plane").position).collect();
    let (spacing, mut warnings) = check_spacing(&positions, &normal);
    let normalised = kept.iter().filter(|&&i| headers[i].normalised).count();
    if normalised > 0 {
        warnings.push(format!(
            "the orientation of {normalised} slice(s) was not of unit length: normalised (the SEG carries the normalised one)"
        ));
    }
    if !left_out.is_empty() {
        warnings.insert(
            0,
            format!(
                "{} slice(s) at the position of another slice left out (the first by Instance Number is kept)",
                left_out.len()
            ),
        );
    }
    Stack { slices: kept, distinct: None, spacing, warnings, left_out }
}

/// The typical step between ordered positions and what is wrong with the steps.
fn check_spacing(positions: &[[f64; 3]], normal: &[f64; 3]) -> (Option<f64>, Vec<String>) {
    let steps: Vec<f64> = positions.windows(2).map(|w| dot(&w[1], normal) - dot(&w[0], normal)).collect();
    let mut warnings = Vec::new();
    let shared = steps.iter().filter(|s| **s < SAME_POSITION_MM).count();
    if shared > 0 {
        warnings.push(format!("{shared} slice(s) share a position with their neighbour"));
    }
    let mut distinct: Vec<f64> = steps.iter().copied().filter(|s| *s >= SAME_POSITION_MM).collect();
    distinct.sort_by(f64::total_cmp);
    let Some(&typical) = distinct.get(distinct.len() / 2) else {
        return (None, warnings);
    };
    for (k, step) in steps.iter().enumerate().filter(|(_, s)| **s >= SAME_POSITION_MM) {
        if *step > GAP_FACTOR * typical {
            warnings.push(format!(
                "a gap of {step:.2} mm between slices {} and {} (spacing {typical:.2} mm): a slice may be missing",
                k + 1,
                k + 2
            ));
        } else if (step - typical).abs() > IRREGULAR_FRACTION * typical {
            warnings.push(format!(
                "irregular spacing: {step:.2} mm between slices {} and {} (spacing {typical:.2} mm)",
                k + 1,
                k + 2
            ));
        }
    }
    if let (Some(first), Some(last)) = (positions.first(), positions.last()) {
        let line = [last[0] - first[0], last[1] - first[1], last[2] - first[2]];
        let length = dot(&line, &line).sqrt();
        if length > SAME_POSITION_MM {
            let angle = (dot(&line, normal).abs() / length).clamp(-1.0, 1.0).acos().to_degrees();
            if angle > TILT_DEGREES {
                warnings.push(format!("the slices are tilted {angle:.1}° from their normal (gantry tilt)"));
            }
        }
    }
    (Some(typical), warnings)
}

fn dot(a: &[f64; 3], b: &[f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

/// Voxel (column, row, slice) → mm in RAS+, as NIfTI wants it: rows of a 3×4 matrix. The slice
/// axis runs from the first position to the last (so a tilt is kept), or along the normal by the
/// slice thickness for a single slice. DICOM's LPS becomes RAS by negating x and y.
pub fn nifti_affine(planes: &[&SlicePlane]) -> Option<[[f64; 4]; 3]> {
    let first = planes.first()?;
    let last = planes.last()?;
    let n = (planes.len().max(2) - 1) as f64;
    Some(affine_with_step(first, std::array::from_fn(|a| (last.position[a] - first.position[a]) / n)))
}

/// A slice that lies further than this fraction of a step from the grid is off it.
const OFF_GRID_FRACTION: f64 = 0.2;
/// A grid with more planes than this many times the slices is no grid of theirs.
const MAX_GRID_FACTOR: usize = 4;

/// A stack's slices on a regular grid of voxel planes, as the NIfTI volume holds them: where a
/// slice is missing (a gap), the grid has an empty plane, as dcmqi's conversion of the SEG does.
#[derive(Debug, Clone, PartialEq)]
pub struct SliceGrid {
    /// Planes of the grid, from the first slice to the last.
    pub planes: usize,
    /// The grid plane of each slice, in the stack's order.
    pub index: Vec<usize>,
    pub affine: [[f64; 4]; 3],
}

/// Places ordered slices on the grid of the stack's typical `spacing` (from the first position
/// to the last, so a tilt stays in the slice axis), or says why they do not lie on one.
pub fn slice_grid(planes: &[&SlicePlane], spacing: Option<f64>) -> Result<SliceGrid, String> {
    let (Some(first), Some(last)) = (planes.first(), planes.last()) else {
        return Err("no slices".into());
    };
    let normal = first.normal();
    let along: Vec<f64> = planes.iter().map(|p| dot(&p.position, &normal) - dot(&first.position, &normal)).collect();
    let span = along[along.len() - 1];
    let regular = || {
        Ok(SliceGrid {
            planes: planes.len(),
            index: (0..planes.len()).collect(),
            affine: nifti_affine(planes).expect("slices"),
        })
    };
    let Some(spacing) = spacing.filter(|s| *s > 0.0 && planes.len() > 1) else {
        return regular();
    };
    let steps = (span / spacing).round().max(1.0);
    let count = steps as usize + 1;
    if count > MAX_GRID_FACTOR * planes.len() {
        return Err(format!("the slices span {count} steps of {spacing:.2} mm, too sparse for one volume"));
    }
    let step = span / steps;
    let mut index = Vec::with_capacity(planes.len());
    for (k, x) in along.iter().enumerate() {
        let on = x / step;
        let plane = on.round();
        if (on - plane).abs() > OFF_GRID_FRACTION || index.last().is_some_and(|&i| i as f64 >= plane) {
            return Err(format!(
                "slice {} lies {:.2} mm from the {step:.2} mm grid of the stack: the slices do not lie on one grid",
                k + 1,
                (on - plane).abs() * step
            ));
        }
        index.push(plane as usize);
    }
    let slice_step = std::array::from_fn(|a| (last.position[a] - first.position[a]) / steps);
    Ok(SliceGrid { planes: count, index, affine: affine_with_step(first, slice_step) })
}

/// The affine of a volume whose first slice is `first` and whose slice axis is `slice_step` (mm,
/// LPS); a step of nothing (one slice) runs along the normal by the slice thickness.
fn affine_with_step(first: &SlicePlane, mut slice_step: [f64; 3]) -> [[f64; 4]; 3] {
    let (row_dir, col_dir) = (&first.orientation[..3], &first.orientation[3..]);
    let [row_spacing, column_spacing] = first.spacing;
    if dot(&slice_step, &slice_step).sqrt() < SAME_POSITION_MM {
        // One slice, or every slice at one position: step along the normal by the thickness.
        slice_step = first.normal().map(|v| v * first.thickness.unwrap_or(1.0));
    }
    let mut affine = [[0.0; 4]; 3];
    for a in 0..3 {
        let sign = if a < 2 { -1.0 } else { 1.0 };
        affine[a] = [
            sign * row_dir[a] * column_spacing,
            sign * col_dir[a] * row_spacing,
            sign * slice_step[a],
            sign * first.position[a],
        ];
    }
    affine
}

#[cfg(test)]
mod tests {
    use super::*;

    static OBJECTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);

    fn axial(z: f64, instance: i64) -> SliceHeader {
        SliceHeader {
            plane: Some(SlicePlane {
                position: [-100.0, -100.0, z],
                orientation: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
                spacing: [0.8, 0.7],
                thickness: Some(2.5),
            }),
            instance_number: Some(instance),
            rows: 64,
            columns: 64,
            dimension: None,
            // Each slice its own object (unless a test says otherwise).
            instance: Some(format!("1.2.3.{}", OBJECTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed))),
            acquisition: [None, None, None],
            normalised: false,
        }
    }

    #[test]
    fn slices_are_ordered_along_the_normal_whatever_their_instance_numbers() {
        let headers = vec![axial(5.0, 1), axial(0.0, 3), axial(2.5, 2)];
        let stacks = stacks(&headers);
        assert_eq!(stacks.len(), 1);
        assert_eq!(stacks[0].slices, vec![1, 2, 0]);
        assert_eq!(stacks[0].spacing, Some(2.5));
        assert!(stacks[0].warnings.is_empty(), "{:?}", stacks[0].warnings);
        assert_eq!(stacks[0].distinct, None);
    }

    #[test]
    fn a_gap_duplicates_and_a_tilt_are_warnings() {
        let mut headers: Vec<SliceHeader> = [0.0, 2.5, 5.0, 10.0, 10.0].iter().map(|&z| axial(z, 0)).collect();
        let stack = &stacks(&headers)[0];
        assert!(
            stack.warnings.iter().any(|w| w.contains("gap of 5.00 mm between slices 3 and 4")),
            "{:?}",
            stack.warnings
        );
        assert!(
            stack.warnings[0].starts_with("1 slice(s) at the position of another slice left out"),
            "{:?}",
            stack.warnings
        );
        assert_eq!((stack.slices.len(), stack.left_out.clone()), (4, vec![4]), "one slice per position");
        headers = (0..4).map(|k| axial(2.5 * k as f64, 0)).collect();
        for (k, h) in headers.iter_mut().enumerate() {
            h.plane.as_mut().unwrap().position[1] += 0.5 * k as f64; // 11.3° off the normal
        }
        assert!(stacks(&headers)[0].warnings.iter().any(|w| w.contains("gantry tilt")));
    }

    #[test]
    fn orientation_size_and_time_split_stacks_and_say_why() {
        let mut coronal = axial(0.0, 4);
        coronal.plane.as_mut().unwrap().orientation = [1.0, 0.0, 0.0, 0.0, 0.0, -1.0];
        let mut small = axial(0.0, 5);
        small.rows = 32;
        let mut later = axial(0.0, 6);
        later.dimension = Some("temporal position 2".into());
        let stacks = stacks(&[axial(0.0, 1), coronal, small, later, axial(2.5, 2)]);
        assert_eq!(stacks.len(), 4);
        assert_eq!(stacks[0].slices, vec![0, 4]);
        assert!(stacks[1].distinct.as_deref().unwrap().contains("orientation 1\\0\\0\\0\\0\\-1"));
        assert!(stacks[2].distinct.as_deref().unwrap().contains("64×32"));
        assert!(stacks[3].distinct.as_deref().unwrap().contains("temporal position 2"));
    }

    #[test]
    fn time_points_told_apart_only_by_acquisition_number_are_stacks() {
        // 3 time points × 4 positions, shuffled; each time point its own Acquisition Number.
        let mut headers = Vec::new();
        for (k, t) in [2, 0, 1].into_iter().enumerate() {
            for z in [7.5, 0.0, 5.0, 2.5] {
                let mut h = axial(z, (10 * k) as i64 + 1);
                h.acquisition = [Some((t + 1).to_string()), None, Some(format!("1200{k}"))];
                headers.push(h);
            }
        }
        let stacks = stacks(&headers);
        assert_eq!(stacks.len(), 3, "{stacks:?}");
        for stack in &stacks {
            assert_eq!(stack.slices.len(), 4);
            assert!(stack.left_out.is_empty() && stack.warnings.is_empty(), "{:?}", stack.warnings);
            assert_eq!(stack.spacing, Some(2.5));
        }
        assert_eq!(stacks[0].distinct.as_deref(), Some("orientation 1\\0\\0\\0\\1\\0, 64×64, acquisition 3"));

        // An Acquisition Time that differs from slice to slice (and one Acquisition Number): no
        // time points, and no duplicates either: the slices stay, their shared positions a warning.
        for (k, h) in headers.iter_mut().enumerate() {
            h.acquisition = [Some("1".into()), None, Some(format!("12{k:02}"))];
        }
        let one = super::stacks(&headers);
        assert_eq!(one.len(), 1);
        assert_eq!((one[0].slices.len(), one[0].left_out.len()), (12, 0));
        assert!(one[0].warnings.iter().any(|w| w.contains("8 slice(s) share a position")), "{:?}", one[0].warnings);
        // Acquired alike as well: duplicates, one per position kept.
        for h in headers.iter_mut() {
            h.acquisition = [Some("1".into()), None, None];
        }
        let kept = super::stacks(&headers);
        assert_eq!((kept[0].slices.len(), kept[0].left_out.len()), (4, 8));
        // Frames of one object at one position are its own time series, not duplicates.
        for h in headers.iter_mut() {
            h.instance = Some("1.2.3.cine".into());
        }
        assert_eq!(super::stacks(&headers)[0].left_out.len(), 0);
    }

    #[test]
    fn an_orientation_off_unit_length_by_a_rounding_is_normalised_and_beyond_it_refused() {
        let axial = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0];
        assert_eq!(unit_orientation(axial), Ok((axial, false)));
        // A private MR's (0, 0.98796, -0.151524): length 0.99952.
        let (fixed, normalised) = unit_orientation([1.0, 0.0, 0.0, 0.0, 0.98796, -0.151524]).unwrap();
        assert!(normalised);
        let length = (fixed[4] * fixed[4] + fixed[5] * fixed[5]).sqrt();
        assert!((length - 1.0).abs() < 1e-12, "{fixed:?}");
        assert!(unit_orientation([1.0, 0.0, 0.0, 0.0, 0.9, 0.0]).unwrap_err().contains("0.90000"));
    }

    #[test]
    fn without_geometry_instance_number_orders() {
        let mut headers: Vec<SliceHeader> = (0..3).map(|k| axial(0.0, 3 - k)).collect();
        for h in &mut headers {
            h.plane = None;
        }
        let stack = &stacks(&headers)[0];
        assert_eq!(stack.slices, vec![2, 1, 0]);
        assert!(stack.warnings[0].contains("ordered by Instance Number"));
    }

    #[test]
    fn a_gap_is_an_empty_plane_of_the_grid_and_slices_off_it_are_refused() {
        let headers: Vec<SliceHeader> = [0.0, 2.5, 5.0, 10.0, 12.5].iter().map(|&z| axial(z, 0)).collect();
        let planes: Vec<&SlicePlane> = headers.iter().map(|h| h.plane.as_ref().unwrap()).collect();
        let grid = slice_grid(&planes, Some(2.5)).unwrap();
        assert_eq!((grid.planes, grid.index.clone()), (6, vec![0, 1, 2, 4, 5]), "plane 3 is the missing slice");
        assert_eq!(grid.affine[2], [0.0, 0.0, 2.5, 0.0], "the true spacing, not the mean");
        let off: Vec<SliceHeader> = [0.0, 2.5, 6.2, 7.5].iter().map(|&z| axial(z, 0)).collect();
        let planes: Vec<&SlicePlane> = off.iter().map(|h| h.plane.as_ref().unwrap()).collect();
        assert!(slice_grid(&planes, Some(2.5)).unwrap_err().contains("do not lie on one grid"));
    }

    #[test]
    fn the_affine_maps_voxels_to_ras() {
        let (a, b) = (axial(0.0, 1), axial(5.0, 2));
        let affine = nifti_affine(&[a.plane.as_ref().unwrap(), b.plane.as_ref().unwrap()]).unwrap();
        // Column index along x by the column spacing, row index along y by the row spacing; LPS → RAS.
        assert_eq!(affine[0], [-0.7, -0.0, -0.0, 100.0]);
        assert_eq!(affine[1], [-0.0, -0.8, -0.0, 100.0]);
        assert_eq!(affine[2], [0.0, 0.0, 5.0, 0.0]);
    }
}
