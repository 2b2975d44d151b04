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
            // A few frames: a huge frame count in a small file must not make one input slow.
            for frame in 0..file.frame_count().min(3) {
                let _ = file.frame_rgb(frame, &dicom::WindowSetting::FromFile);
            }
        }
        let _ = dicom::seg_references(bytes);
    } else {
        let _ = decode::decode(bytes);
    }
});
