//! Issue 7: tiling with blended stitching. A tiled prediction agrees with the untiled prediction
//! of the same content away from the seams, and the seams do not show.
//!
//! "Untiled" means each 128-px region run through the model on its own, at a model input of
//! 128×128 (set in both pipelines, so tiles are 128 px whatever the card's size). A single pass
//! over the whole 512×384 image would be no reference: the prediction of a region then depends on
//! the regions around it.

mod common;

use common::{Backend, World};

type Map = image::ImageBuffer<image::Luma<u16>, Vec<u16>>;

fn pipeline(world: &World, name: &str, body: &str) -> std::path::PathBuf {
    world.pipeline(
        name,
        &format!("[preprocess]\ninput_size = [128, 128]\n{body}\n[outputs]\nmask = true\noverlay = true\nprobabilities = true"),
    )
}

/// The probability map efen wrote for `file` under `pipeline`.
fn probabilities(world: &World, pipeline: &str, file: &str) -> Map {
    let out = world.out();
    for case in common::names(&out) {
        let result: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join(&case).join("result.json")).unwrap()).unwrap();
        if result["pipeline"] == pipeline && result["source_path"].as_str().unwrap().ends_with(file) {
            return image::open(out.join(&case).join("probabilities.png")).unwrap().to_luma16();
        }
    }
    panic!("no output of pipeline {pipeline} for {file}");
}

/// Mean |P(x, y) - P(x - 1, y)| over y, for every column x ≥ 1 (0..1 scale).
fn column_steps(map: &Map) -> Vec<f64> {
    let (w, h) = map.dimensions();
    let mut steps = vec![0.0; w as usize];
    for x in 1..w {
        let total: f64 =
            (0..h).map(|y| (map.get_pixel(x, y).0[0] as f64 - map.get_pixel(x - 1, y).0[0] as f64).abs()).sum();
        steps[x as usize] = total / h as f64 / 65535.0;
    }
    steps
}

#[tokio::test]
async fn tiled_prediction_matches_untiled_away_from_seams_and_shows_no_seams() {
    let world = World::new(Backend::Sqlite).await;
    // A 512×384 mosaic of twelve 128-px blocks.
    // The untiled prediction of each block is the model run on that block alone; the tiled run
    // covers the mosaic with 128-px tiles every 64 px, so half of its tiles straddle two blocks.
    let blocks = world.dir.path().join("blocks");
    std::fs::create_dir_all(&blocks).unwrap();
    let mut large = image::RgbImage::new(512, 384);
    let files = ["case01.png", "case02.png", "case04.tif", "case05.bmp", "case09_rgba.png", "case12.png"];
    for (i, file) in files.iter().cycle().take(12).enumerate() {
        let block = image::open(common::repo().join("samples/synthetic").join(file)).unwrap().to_rgb8();
        let mut block = image::imageops::resize(&block, 128, 128, image::imageops::FilterType::Triangle);
        // Every block distinct, so that none is a duplicate of another.
        block.get_pixel_mut(0, 0).0[0] = i as u8;
        image::imageops::replace(&mut large, &block, (i % 4) as i64 * 128, (i / 4) as i64 * 128);
        block.save(blocks.join(format!("block{i:02}.png"))).unwrap();
    }
    large.save(world.drop_dir().join("large.png")).unwrap();

    let tiled = pipeline(&world, "tiled", "[preprocess.tiling]\nenabled = true\noverlap = 0.5\nweights = \"gaussian\"");
    let single = pipeline(&world, "single", "");
    for (p, dir) in [(&tiled, world.drop_dir()), (&single, blocks)] {
        let output = world.run(&["run", "--pipeline", p.to_str().unwrap(), dir.to_str().unwrap()]);
        assert_eq!(output.status.code(), Some(0));
    }
    let t = probabilities(&world, "tiled", "large.png");
    assert_eq!(t.dimensions(), (512, 384));
    let mut u = Map::new(512, 384);
    for i in 0..12u32 {
        let block = probabilities(&world, "single", &format!("block{i:02}.png"));
        image::imageops::replace(&mut u, &block, (i % 4) as i64 * 128, (i / 4) as i64 * 128);
    }

    // Away from the seams: the central 64×64 of every block, where the aligned tile dominates.
    let (mut diff, mut agree, mut n) = (0.0f64, 0usize, 0usize);
    for block in 0..12u32 {
        let (bx, by) = ((block % 4) * 128, (block / 4) * 128);
        for y in by + 32..by + 96 {
            for x in bx + 32..bx + 96 {
                let (a, b) = (t.get_pixel(x, y).0[0] as f64 / 65535.0, u.get_pixel(x, y).0[0] as f64 / 65535.0);
                diff += (a - b).abs();
                agree += ((a >= 0.5) == (b >= 0.5)) as usize;
                n += 1;
            }
        }
    }
    let (mean_diff, agreement) = (diff / n as f64, agree as f64 / n as f64);
    eprintln!("tiled vs untiled, block centres: mean |Δp| = {mean_diff:.4}, mask agreement = {agreement:.4}");
    assert!(mean_diff < 0.02, "mean |Δp| {mean_diff}");
    assert!(agreement > 0.99, "mask agreement {agreement}");

    // No step along the edges of the straddling tiles (x = 64, 192, 320, 448 lie inside blocks,
    // where the untiled map is smooth): the jump there is no larger than the untiled map's.
    let (steps_t, steps_u) = (column_steps(&t), column_steps(&u));
    let worst = [64usize, 192, 320, 448].iter().map(|&x| steps_t[x] - steps_u[x]).fold(f64::MIN, f64::max);
    let typical = steps_t.iter().sum::<f64>() / steps_t.len() as f64;
    eprintln!("largest extra step at a tile edge: {worst:.4} (typical column step {typical:.4})");
    assert!(worst < 0.01, "a seam shows: extra step {worst}");
    world.close().await;
}
