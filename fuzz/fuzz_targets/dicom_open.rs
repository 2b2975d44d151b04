//! Any bytes → `open`, every frame through `frame_rgb` with each window, and a SEG: errors are
//! fine, panics and hangs are bugs.
#![no_main]

use efen::dicom::{self, SegSettings, WindowSetting};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let _ = dicom::looks_like_dicom(bytes);
    let Ok(file) = dicom::open(bytes) else { return };
    let _ = file.identity(Some(b"fuzz"));
    let _ = file.decoder_name();
    // Bound the work per input: the first two frames.
    for frame in 0..file.frame_count().min(2) {
        for window in [
            WindowSetting::FromFile,
            WindowSetting::Fixed { center: 40.0, width: 400.0 },
            WindowSetting::Percentile { low: 1.0, high: 99.0 },
        ] {
            let _ = file.frame_rgb(frame, &window);
        }
    }
    if u64::from(file.rows()) * u64::from(file.columns()) <= 1 << 22 {
        let mask = image::GrayImage::from_fn(file.columns(), file.rows(), |x, y| image::Luma([((x ^ y) & 1) as u8]));
        let _ = dicom::write_seg(&file, 0, &mask, &SegSettings::default(), "00");
    }
});
