//! A series' `overlay.png`: the overlays of the slices with the most foreground, in slice order,
//! in a near-square grid (2×2 for four), so that one picture shows where the findings are.

use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage};

use super::{EmitError, create_dir, save_png};

/// Between cells.
const GAP: u32 = 4;
const BACKGROUND: Rgb<u8> = Rgb([32, 32, 32]);

/// The tiles in a grid, row by row.
pub fn montage(tiles: &[RgbImage]) -> RgbImage {
    let n = tiles.len().max(1) as u32;
    let columns = (n as f64).sqrt().ceil() as u32;
    let rows = n.div_ceil(columns);
    let cell_w = tiles.iter().map(|t| t.width()).max().unwrap_or(1);
    let cell_h = tiles.iter().map(|t| t.height()).max().unwrap_or(1);
    let mut out =
        RgbImage::from_pixel(columns * cell_w + (columns - 1) * GAP, rows * cell_h + (rows - 1) * GAP, BACKGROUND);
    for (k, tile) in tiles.iter().enumerate() {
        let (column, row) = (k as u32 % columns, k as u32 / columns);
        image::imageops::replace(&mut out, tile, (column * (cell_w + GAP)) as i64, (row * (cell_h + GAP)) as i64);
    }
    out
}

/// Writes `overlay.png` in `dir`.
pub fn write_montage(dir: &Path, tiles: &[RgbImage]) -> Result<PathBuf, EmitError> {
    create_dir(dir)?;
    let path = dir.join("overlay.png");
    save_png(&path, &montage(tiles), image::codecs::png::FilterType::Sub)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_slices_make_a_two_by_two_grid_in_order() {
        let tiles: Vec<RgbImage> = (0..4u8).map(|k| RgbImage::from_pixel(3, 2, Rgb([k * 60, 0, 0]))).collect();
        let grid = montage(&tiles);
        assert_eq!(grid.dimensions(), (3 * 2 + GAP, 2 * 2 + GAP));
        assert_eq!(grid.get_pixel(0, 0), &Rgb([0, 0, 0]));
        assert_eq!(grid.get_pixel(3 + GAP, 0), &Rgb([60, 0, 0]));
        assert_eq!(grid.get_pixel(0, 2 + GAP), &Rgb([120, 0, 0]));
        assert_eq!(grid.get_pixel(3, 0), &BACKGROUND);
        assert_eq!(montage(&tiles[..1]).dimensions(), (3, 2));
    }
}
