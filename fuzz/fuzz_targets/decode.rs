//! The decode stage on arbitrary bytes: DICOM (parse, every frame's pixels, windowing, identity,
//! SEG references) and images. Any panic or crash is a bug; errors are the expected outcome.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../src/decode.rs"]
mod decode;
#[allow(dead_code)]
#[path = "../../src/dicom/mod.rs"]
mod dicom;

fuzz_target!(init: {
    // libfuzzer-sys aborts in its panic hook, before efen's catch_unwind around dicom-rs could
    // turn a codec panic into an error. Use the default hook instead: a panic that escapes efen
    // still ends in libfuzzer-sys's own catch_unwind, which aborts and reports the input.
    let _ = std::panic::take_hook();
}, |bytes: &[u8]| {
    if dicom::looks_like_dicom(bytes) {
        if let Ok(file) = dicom::open(bytes) {
            let _ = file.identity(Some(b"key"));
            let _ = file.decoder_name();
            // Bound the work per input: the first two frames, each window kind.
            for frame in 0..file.frame_count().min(2) {
                for window in [
                    dicom::WindowSetting::FromFile,
                    dicom::WindowSetting::Fixed { center: 40.0, width: 400.0 },
                    dicom::WindowSetting::Percentile { low: 1.0, high: 99.0 },
                ] {
                    let _ = file.frame_rgb(frame, &window);
                }
            }
            if u64::from(file.rows()) * u64::from(file.columns()) <= 1 << 22 {
                let mask =
                    image::GrayImage::from_fn(file.columns(), file.rows(), |x, y| image::Luma([((x ^ y) & 1) as u8]));
                let _ = dicom::write_seg(&file, 0, &mask, &dicom::SegSettings::default(), "00");
            }
        }
        if let Some(frames) = dicom::seg_references(bytes)
            && let Some(reference) = frames.iter().flatten().next()
        {
            let _ = dicom::seg_mask(bytes, &reference.sop_instance_uid, reference.frame_number.unwrap_or(1));
        }
    } else {
        let _ = decode::decode(bytes);
    }
});
