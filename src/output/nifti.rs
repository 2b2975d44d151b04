//! `mask.nii.gz`: a series' mask volume as NIfTI-1 (one `.nii` file, gzipped) with its geometry, for
//! nibabel, ITK-SNAP and nnU-Net. Field offsets are those of `nifti1.h`; everything little-endian.

use std::array::from_fn;
use std::io::Write;
use std::path::Path;

use super::{EmitError, write_bytes};
use crate::postprocess::PackedMask;

/// A mask volume and where it lies: voxels x fastest (columns), then y (rows), then z (slices),
/// 0 or 1 (or 0/255, written as given).
pub struct MaskVolume<'a> {
    /// [columns, rows, slices]
    pub dims: [usize; 3],
    /// len == product of dims
    pub voxels: &'a [u8],
    /// voxel (i, j, k) → scanner mm in RAS+ (NIfTI's convention): rows of a 3×4 matrix.
    pub affine: [[f64; 4]; 3],
}

/// The 348-byte header, then 4 zero bytes (extension flag: none): the voxels start at 352.
const VOX_OFFSET: usize = 352;

/// Writes `path` (its folder must exist) through a temporary name, like every output.
pub fn write_nifti_gz(path: &Path, volume: &MaskVolume) -> Result<(), EmitError> {
    write_gz(path, invalid(volume), |gz| gz.write_all(&nifti_bytes(volume)))
}

/// Writes a series' mask from its bit-packed slices (in slice order, all the same size), one
/// voxel plane at a time: the volume never exists unpacked.
pub fn write_packed_nifti_gz(path: &Path, slices: &[&PackedMask], affine: [[f64; 4]; 3]) -> Result<(), EmitError> {
    let (columns, rows) = slices.first().map_or((0, 0), |s| s.dimensions());
    let dims = [columns as usize, rows as usize, slices.len()];
    let mismatch =
        slices.iter().any(|s| s.dimensions() != (columns, rows)).then(|| "slices differ in size".to_string());
    write_gz(path, mismatch.or_else(|| invalid_geometry(dims, &affine)), |gz| {
        gz.write_all(&header(dims, &affine))?;
        let mut plane = Vec::with_capacity(dims[0] * dims[1]);
        for slice in slices {
            plane.clear();
            slice.extend_voxels(&mut plane);
            gz.write_all(&plane)?;
        }
        Ok(())
    })
}

/// Gzips what `fill` writes into `path`, unless `refused` says why NIfTI-1 cannot hold it.
fn write_gz(
    path: &Path,
    refused: Option<String>,
    fill: impl FnOnce(&mut flate2::write::GzEncoder<Vec<u8>>) -> std::io::Result<()>,
) -> Result<(), EmitError> {
    if let Some(why) = refused {
        let source = std::io::Error::new(std::io::ErrorKind::InvalidInput, why);
        return Err(EmitError::Write { path: path.into(), source });
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    fill(&mut gz).expect("writing to memory");
    write_bytes(path, &gz.finish().expect("writing to memory"))
}

/// Why NIfTI-1 cannot hold `volume`, if it cannot.
fn invalid(volume: &MaskVolume) -> Option<String> {
    let [nx, ny, nz] = volume.dims;
    if volume.voxels.len() != nx * ny * nz {
        return Some(format!("{} voxels for dims {:?}", volume.voxels.len(), volume.dims));
    }
    invalid_geometry(volume.dims, &volume.affine)
}

fn invalid_geometry(dims: [usize; 3], affine: &[[f64; 4]; 3]) -> Option<String> {
    if dims.iter().any(|&n| n == 0 || n > i16::MAX as usize) {
        return Some(format!("dims {dims:?}: NIfTI-1 holds 1..=32767 per axis"));
    }
    let d = det(&linear(affine));
    (!(d.abs() > 1e-12 && d.is_finite())).then(|| format!("singular affine {affine:?}"))
}

/// The uncompressed `.nii`: header and voxels. Panics on a volume [`write_nifti_gz`] refuses.
pub fn nifti_bytes(volume: &MaskVolume) -> Vec<u8> {
    assert!(invalid(volume).is_none(), "{}", invalid(volume).unwrap_or_default());
    let mut bytes = header(volume.dims, &volume.affine);
    bytes.extend_from_slice(volume.voxels);
    bytes
}

/// The 348-byte header and the empty extension flag, for uint8 voxels.
fn header(dims: [usize; 3], affine: &[[f64; 4]; 3]) -> Vec<u8> {
    let [nx, ny, nz] = dims;
    let q = qform(affine);
    let mut h = vec![0u8; VOX_OFFSET];
    let mut put = |offset: usize, bytes: &[u8]| h[offset..offset + bytes.len()].copy_from_slice(bytes);
    let f32s = |values: &[f64]| values.iter().flat_map(|&v| (v as f32).to_le_bytes()).collect::<Vec<u8>>();
    put(0, &348i32.to_le_bytes()); // sizeof_hdr
    let dim = [3, nx, ny, nz, 1, 1, 1, 1].map(|n| n as i16);
    put(40, &dim.iter().flat_map(|d| d.to_le_bytes()).collect::<Vec<u8>>());
    put(70, &2i16.to_le_bytes()); // datatype: DT_UINT8
    put(72, &8i16.to_le_bytes()); // bitpix
    put(76, &f32s(&[q.qfac, q.spacing[0], q.spacing[1], q.spacing[2]])); // pixdim[0..4]
    put(108, &f32s(&[VOX_OFFSET as f64, 1.0, 0.0])); // vox_offset, scl_slope, scl_inter: stored as is
    put(123, &[2]); // xyzt_units: mm
    put(148, b"efen mask"); // descrip
    // Both transforms, both "scanner" and saying the same: readers differ in which they prefer
    // (nibabel: the sform; ITK and SimpleITK: the qform). A qform is a rotation and cannot hold a
    // sheared affine (a gantry tilt): then it is marked unknown (code 0), so no reader takes it.
    let qform_code: i16 = if is_sheared(affine) { 0 } else { 1 };
    put(252, &qform_code.to_le_bytes()); // qform_code
    put(254, &1i16.to_le_bytes()); // sform_code
    let a = affine;
    put(256, &f32s(&[q.b, q.c, q.d, a[0][3], a[1][3], a[2][3]])); // quatern_b..d, qoffset_x..z
    put(280, &f32s(&a.concat())); // srow_x, srow_y, srow_z
    put(344, b"n+1\0"); // magic: header and data in one file
    h
}

/// Columns of the affine's linear part that are not at right angles (within 1e-4 of a radian).
fn is_sheared(affine: &[[f64; 4]; 3]) -> bool {
    let m = linear(affine);
    let column = |j: usize| -> [f64; 3] { from_fn(|i| m[i][j]) };
    let cosine = |a: [f64; 3], b: [f64; 3]| {
        let dot = |x: [f64; 3], y: [f64; 3]| x[0] * y[0] + x[1] * y[1] + x[2] * y[2];
        dot(a, b) / (dot(a, a) * dot(b, b)).sqrt()
    };
    [(0, 1), (0, 2), (1, 2)].iter().any(|&(a, b)| cosine(column(a), column(b)).abs() > 1e-4)
}

/// What the qform stores besides the offset.
#[derive(Debug)]
struct Qform {
    b: f64,
    c: f64,
    d: f64,
    /// -1 for a left-handed affine: the reader negates the third column.
    qfac: f64,
    /// Voxel sizes: the affine's column norms (pixdim[1..4]).
    spacing: [f64; 3],
}

/// `nifti_mat44_to_quatern` of nifti1_io.c: column norms are the spacing, the nearest rotation to
/// the normalised columns (improper: third column negated, qfac -1) becomes the quaternion
/// (a, b, c, d) with a ≥ 0; a is not stored, readers take a = √(1 − b² − c² − d²).
fn qform(affine: &[[f64; 4]; 3]) -> Qform {
    let m = linear(affine);
    let spacing: [f64; 3] = from_fn(|j| (0..3).map(|i| m[i][j] * m[i][j]).sum::<f64>().sqrt());
    let mut r = nearest_orthogonal(from_fn(|i| from_fn(|j| m[i][j] / spacing[j])));
    let qfac = if det(&r) < 0.0 { -1.0 } else { 1.0 };
    r.iter_mut().for_each(|row| row[2] *= qfac);
    let [[r11, r12, r13], [r21, r22, r23], [r31, r32, r33]] = r;
    let trace = r11 + r22 + r33 + 1.0; // 4a²
    let (a, b, c, d) = if trace > 0.5 {
        let a = 0.5 * trace.sqrt();
        (a, 0.25 * (r32 - r23) / a, 0.25 * (r13 - r31) / a, 0.25 * (r21 - r12) / a)
    } else {
        // Near 180° a is small: divide by the largest of b, c, d instead.
        let (bb, cc, dd) = (1.0 + r11 - r22 - r33, 1.0 + r22 - r11 - r33, 1.0 + r33 - r11 - r22); // 4b², 4c², 4d²
        if bb > 1.0 {
            let b = 0.5 * bb.sqrt();
            (0.25 * (r32 - r23) / b, b, 0.25 * (r12 + r21) / b, 0.25 * (r13 + r31) / b)
        } else if cc > 1.0 {
            let c = 0.5 * cc.sqrt();
            (0.25 * (r13 - r31) / c, 0.25 * (r12 + r21) / c, c, 0.25 * (r23 + r32) / c)
        } else {
            let d = 0.5 * dd.sqrt();
            (0.25 * (r21 - r12) / d, 0.25 * (r13 + r31) / d, 0.25 * (r23 + r32) / d, d)
        }
    };
    // q and −q are the same rotation; readers assume a ≥ 0.
    let s = if a < 0.0 { -1.0 } else { 1.0 };
    Qform { b: s * b, c: s * c, d: s * d, qfac, spacing }
}

/// The orthogonal matrix nearest to `m` (polar decomposition by Newton's X ← (X + X⁻ᵀ)/2), as
/// nifti1_io.c does: a gantry-tilted CT series has sheared axes, which the sform keeps and the qform
/// cannot. Orthogonal input comes back unchanged.
fn nearest_orthogonal(mut x: [[f64; 3]; 3]) -> [[f64; 3]; 3] {
    for _ in 0..50 {
        // X⁻ᵀ = cofactors / det, and the cofactor rows are cross products of X's rows.
        let cof = [cross(x[1], x[2]), cross(x[2], x[0]), cross(x[0], x[1])];
        let det = (0..3).map(|j| x[0][j] * cof[0][j]).sum::<f64>();
        let next: [[f64; 3]; 3] = from_fn(|i| from_fn(|j| 0.5 * (x[i][j] + cof[i][j] / det)));
        let change = (0..9).map(|n| (next[n / 3][n % 3] - x[n / 3][n % 3]).abs()).fold(0.0, f64::max);
        x = next;
        if change < 1e-14 {
            break;
        }
    }
    x
}

fn linear(affine: &[[f64; 4]; 3]) -> [[f64; 3]; 3] {
    from_fn(|i| from_fn(|j| affine[i][j]))
}

fn cross(u: [f64; 3], v: [f64; 3]) -> [f64; 3] {
    [u[1] * v[2] - u[2] * v[1], u[2] * v[0] - u[0] * v[2], u[0] * v[1] - u[1] * v[0]]
}

fn det(m: &[[f64; 3]; 3]) -> f64 {
    (0..3).map(|j| m[0][j] * cross(m[1], m[2])[j]).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn i16_at(b: &[u8], at: usize) -> i16 {
        i16::from_le_bytes([b[at], b[at + 1]])
    }
    fn f32_at(b: &[u8], at: usize) -> f64 {
        f32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as f64
    }

    /// The rotation a reader rebuilds from the qform (nifti_quatern_to_mat44), without the spacing.
    fn rotation(q: &Qform) -> [[f64; 3]; 3] {
        let (b, c, d) = (q.b, q.c, q.d);
        let a = (1.0 - (b * b + c * c + d * d)).max(0.0).sqrt();
        let z = q.qfac;
        [
            [a * a + b * b - c * c - d * d, 2.0 * (b * c - a * d), 2.0 * (b * d + a * c) * z],
            [2.0 * (b * c + a * d), a * a + c * c - b * b - d * d, 2.0 * (c * d - a * b) * z],
            [2.0 * (b * d - a * c), 2.0 * (c * d + a * b), (a * a + d * d - c * c - b * b) * z],
        ]
    }

    fn affine(r: [[f64; 3]; 3], spacing: [f64; 3], offset: [f64; 3]) -> [[f64; 4]; 3] {
        from_fn(|i| [r[i][0] * spacing[0], r[i][1] * spacing[1], r[i][2] * spacing[2], offset[i]])
    }

    /// An oblique, left-handed orientation near 180° about z (as DICOM LPS axes look in RAS):
    /// Rz(25°)·Rx(−15°)·diag(−1, −1, 1), third axis flipped.
    fn oblique() -> [[f64; 3]; 3] {
        let (z, x) = (25f64.to_radians(), (-15f64).to_radians());
        let rz = [[z.cos(), -z.sin(), 0.0], [z.sin(), z.cos(), 0.0], [0.0, 0.0, 1.0]];
        let rx = [[1.0, 0.0, 0.0], [0.0, x.cos(), -x.sin()], [0.0, x.sin(), x.cos()]];
        let flip = [-1.0, -1.0, -1.0];
        from_fn(|i| from_fn(|j| (0..3).map(|k| rz[i][k] * rx[k][j]).sum::<f64>() * flip[j]))
    }

    #[test]
    fn header_fields_and_data() {
        let voxels: Vec<u8> = (0..60).map(|n| (n % 2) as u8).collect();
        let eye = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        let volume = MaskVolume { dims: [5, 4, 3], voxels: &voxels, affine: affine(eye, [0.8, 0.8, 2.5], [0.0; 3]) };
        let b = nifti_bytes(&volume);
        assert_eq!(i32::from_le_bytes(b[0..4].try_into().unwrap()), 348);
        assert_eq!(f32_at(&b, 108), 352.0);
        assert_eq!(&b[344..348], b"n+1\0");
        assert_eq!(&b[348..352], &[0; 4], "no extensions");
        assert_eq!((0..8).map(|n| i16_at(&b, 40 + 2 * n)).collect::<Vec<_>>(), [3, 5, 4, 3, 1, 1, 1, 1]);
        assert_eq!((i16_at(&b, 70), i16_at(&b, 72)), (2, 8));
        assert_eq!((i16_at(&b, 252), i16_at(&b, 254), b[123]), (1, 1, 2));
        assert_eq!([76, 80, 84, 88].map(|at| f32_at(&b, at)), [1.0, 0.8f32 as f64, 0.8f32 as f64, 2.5], "pixdim");
        assert_eq!(b.len(), 352 + 60);
        assert_eq!(&b[352..], &voxels[..]);
    }

    #[test]
    fn a_sheared_affine_has_no_qform() {
        // A gantry tilt: the slice axis leans 11° towards y; the sform keeps it, a qform cannot.
        let voxels = vec![0u8; 60];
        let mut tilted = affine([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], [0.8, 0.8, 2.5], [0.0; 3]);
        tilted[1][2] = 0.5;
        let b = nifti_bytes(&MaskVolume { dims: [5, 4, 3], voxels: &voxels, affine: tilted });
        assert_eq!((i16_at(&b, 252), i16_at(&b, 254)), (0, 1), "qform unknown, sform scanner");
        assert!((f32_at(&b, 280 + 4 * 6) - 0.5).abs() < 1e-6, "srow_y keeps the shear");
    }

    #[test]
    fn quaternion_round_trips() {
        let cases = [
            ("identity", [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], 1.0),
            ("permutation", [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], 1.0),
            ("180° about z", [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]], 1.0),
            ("left-handed", [[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], -1.0),
            ("oblique left-handed", oblique(), -1.0),
        ];
        for (name, r, qfac) in cases {
            let q = qform(&affine(r, [0.8, 0.8, 2.5], [1.0, 2.0, 3.0]));
            assert_eq!(q.qfac, qfac, "{name}");
            assert!(q.spacing.iter().zip([0.8, 0.8, 2.5]).all(|(s, t)| (s - t).abs() < 1e-12), "{name}");
            let back = rotation(&q);
            for (i, j) in (0..9).map(|n| (n / 3, n % 3)) {
                assert!((back[i][j] - r[i][j]).abs() < 1e-6, "{name} [{i}][{j}]: {back:?} vs {r:?}");
            }
        }
    }

    /// A second reader: nibabel, from the project's venv, loads the file and tells what it sees.
    #[test]
    fn nibabel_reads_the_geometry_and_the_voxels() {
        let dims = [5, 4, 3];
        let voxels: Vec<u8> = (0..60).map(|n| u8::from(n % 7 == 0 || n % 11 == 3)).collect();
        let affine = affine(oblique(), [0.8, 0.8, 2.5], [-120.3, 85.7, 40.2]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mask.nii.gz");
        write_nifti_gz(&path, &MaskVolume { dims, voxels: &voxels, affine }).unwrap();

        let venv = std::env::var_os("EFEN_VENV")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| Path::new(&std::env::var_os("HOME").unwrap()).join(".cache/efen/venv"));
        let python = venv.join("bin/python");
        assert!(python.is_file(), "no Python at {}: run scripts/python-env.sh", python.display());
        let script = "import json, sys, numpy as np, nibabel as nib\n\
            img = nib.load(sys.argv[1]); data = np.asanyarray(img.dataobj)\n\
            print(json.dumps({'affine': img.affine.tolist(), 'qform': img.get_qform().tolist(),\n\
              'sform_code': int(img.header['sform_code']), 'qform_code': int(img.header['qform_code']),\n\
              'dtype': str(data.dtype), 'data': data.tolist()}))";
        let out = std::process::Command::new(&python).arg("-c").arg(script).arg(&path).output().unwrap();
        assert!(out.status.success(), "nibabel: {}", String::from_utf8_lossy(&out.stderr));
        let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

        assert_eq!((seen["sform_code"].as_i64(), seen["qform_code"].as_i64()), (Some(1), Some(1)));
        assert_eq!(seen["dtype"], "uint8", "stored bytes come back unscaled");
        // NIfTI-1 stores float32: the sform is exact to that; the qform also rounds b, c, d.
        for (key, tolerance) in [("affine", 1e-6), ("qform", 1e-5)] {
            for (i, j) in (0..12).map(|n| (n / 4, n % 4)) {
                let (got, want) = (seen[key][i][j].as_f64().unwrap(), affine[i][j] as f32 as f64);
                assert!((got - want).abs() < tolerance, "{key}[{i}][{j}]: {got} vs {want}");
            }
            assert_eq!(seen[key][3], serde_json::json!([0.0, 0.0, 0.0, 1.0]));
        }
        for (n, &v) in voxels.iter().enumerate() {
            let (i, j, k) = (n % dims[0], n / dims[0] % dims[1], n / (dims[0] * dims[1]));
            assert_eq!(seen["data"][i][j][k].as_u64(), Some(v as u64), "voxel ({i}, {j}, {k})");
        }
    }
}
