//! Mask clean-up after thresholding, as nnU-Net and TotalSegmentator users expect: drop connected
//! components smaller than N pixels, keep only the largest component, fill holes. Components are
//! 8-connected (a diagonal touch joins), holes are background regions that do not reach the border
//! through 4-connected background: the usual dual pair, so a diagonal line of foreground closes a
//! hole.

use image::GrayImage;

use super::FOREGROUND;

/// What to clean up (from the pipeline's `[postprocess]`); all off by default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cleanup {
    /// Remove connected components smaller than this many pixels (0: keep all).
    pub min_component_px: u32,
    /// Keep only the largest connected component.
    pub largest_component_only: bool,
    /// Fill background enclosed by foreground.
    pub fill_holes: bool,
}

impl Cleanup {
    /// Applies the options in place: components first (a removed speck leaves no hole to fill),
    /// then holes.
    pub fn apply(&self, mask: &mut GrayImage) {
        if self.min_component_px > 0 || self.largest_component_only {
            let (labels, sizes) = components(mask);
            let largest = sizes.iter().enumerate().skip(1).max_by_key(|(_, s)| **s).map(|(label, _)| label);
            for (value, &label) in mask.iter_mut().zip(&labels) {
                if label == 0 {
                    continue;
                }
                let too_small = sizes[label as usize] < self.min_component_px as usize;
                let not_largest = self.largest_component_only && Some(label as usize) != largest;
                if too_small || not_largest {
                    *value = 0;
                }
            }
        }
        if self.fill_holes {
            fill_holes(mask);
        }
    }
}

/// 8-connected labels of the foreground (0 is background) and the size of each label.
fn components(mask: &GrayImage) -> (Vec<u32>, Vec<usize>) {
    let (w, h) = (mask.width() as i64, mask.height() as i64);
    let on = mask.as_raw();
    let mut labels = vec![0u32; on.len()];
    let mut sizes = vec![0usize];
    let mut stack = Vec::new();
    for start in 0..on.len() {
        if on[start] == 0 || labels[start] != 0 {
            continue;
        }
        let label = sizes.len() as u32;
        sizes.push(0);
        labels[start] = label;
        stack.push(start);
        while let Some(i) = stack.pop() {
            sizes[label as usize] += 1;
            let (x, y) = (i as i64 % w, i as i64 / w);
            for (dx, dy) in [(-1, -1), (0, -1), (1, -1), (-1, 0), (1, 0), (-1, 1), (0, 1), (1, 1)] {
                let (nx, ny) = (x + dx, y + dy);
                if nx < 0 || ny < 0 || nx >= w || ny >= h {
                    continue;
                }
                let n = (ny * w + nx) as usize;
                if on[n] != 0 && labels[n] == 0 {
                    labels[n] = label;
                    stack.push(n);
                }
            }
        }
    }
    (labels, sizes)
}

/// Background not reachable from the border through 4-connected background becomes foreground.
fn fill_holes(mask: &mut GrayImage) {
    let (w, h) = (mask.width() as usize, mask.height() as usize);
    let raw: &mut [u8] = mask;
    let mut outside = vec![false; raw.len()];
    let mut stack: Vec<usize> = Vec::new();
    for x in 0..w {
        stack.extend([x, (h - 1) * w + x]);
    }
    for y in 0..h {
        stack.extend([y * w, y * w + w - 1]);
    }
    while let Some(i) = stack.pop() {
        if raw[i] != 0 || outside[i] {
            continue;
        }
        outside[i] = true;
        let (x, y) = (i % w, i / w);
        if x > 0 {
            stack.push(i - 1);
        }
        if x + 1 < w {
            stack.push(i + 1);
        }
        if y > 0 {
            stack.push(i - w);
        }
        if y + 1 < h {
            stack.push(i + w);
        }
    }
    for (value, reached) in raw.iter_mut().zip(outside) {
        if *value == 0 && !reached {
            *value = FOREGROUND;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A mask from rows of '#' (foreground) and '.'.
    fn mask(rows: &[&str]) -> GrayImage {
        let (w, h) = (rows[0].len() as u32, rows.len() as u32);
        GrayImage::from_fn(w, h, |x, y| {
            image::Luma([if rows[y as usize].as_bytes()[x as usize] == b'#' { 255 } else { 0 }])
        })
    }

    fn text(mask: &GrayImage) -> Vec<String> {
        mask.rows().map(|row| row.map(|p| if p.0[0] > 0 { '#' } else { '.' }).collect()).collect()
    }

    const SCENE: [&str; 6] = [
        "#......", //
        "..####.", //
        "..#..#.", //
        "..####.", //
        ".......", //
        "##....#", //
    ];

    #[test]
    fn small_components_go_and_diagonals_join() {
        let mut m = mask(&SCENE);
        Cleanup { min_component_px: 3, ..Cleanup::default() }.apply(&mut m);
        assert_eq!(text(&m), [".......", "..####.", "..#..#.", "..####.", ".......", "......."]);
        let mut diagonal = mask(&["#..", ".#.", "..#"]);
        Cleanup { min_component_px: 3, ..Cleanup::default() }.apply(&mut diagonal);
        assert_eq!(text(&diagonal), ["#..", ".#.", "..#"], "8-connected: one component of 3");
    }

    #[test]
    fn only_the_largest_component_stays() {
        let mut m = mask(&SCENE);
        Cleanup { largest_component_only: true, ..Cleanup::default() }.apply(&mut m);
        assert_eq!(text(&m), [".......", "..####.", "..#..#.", "..####.", ".......", "......."]);
    }

    #[test]
    fn holes_fill_but_open_bays_do_not() {
        let mut m = mask(&SCENE);
        Cleanup { fill_holes: true, ..Cleanup::default() }.apply(&mut m);
        assert_eq!(text(&m), ["#......", "..####.", "..####.", "..####.", ".......", "##....#"]);
        let mut bay = mask(&["####", "#..#", "#...", "####"]);
        Cleanup { fill_holes: true, ..Cleanup::default() }.apply(&mut bay);
        assert_eq!(text(&bay), ["####", "#..#", "#...", "####"], "open to the border");
    }

    #[test]
    fn off_changes_nothing() {
        let mut m = mask(&SCENE);
        Cleanup::default().apply(&mut m);
        assert_eq!(text(&m), SCENE);
    }
}
