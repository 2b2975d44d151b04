//! Issue 8 through the real binary and real peers: efen as a DICOM node. dcmtk's echoscu and
//! storescu and an Orthanc started by the test are the other side.

mod common;
mod node_support;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Backend, KillOnDrop, SpawnGuarded, World, count, wait_exit};
use node_support::*;

/// `efen watch` with the DICOM node on `port`.
fn start_node(world: &World, name: &str, port: u16, env: &[(&str, String)]) -> KillOnDrop {
    let listen = format!("127.0.0.1:{port}");
    let mut all = vec![
        ("EFEN_NODE__LISTEN", listen.as_str()),
        ("EFEN_NODE__SERIES_QUIET_MS", "1000"),
        ("EFEN_WATCH__SERIES_QUIET_MS", "1000"),
        ("EFEN_NODE__SEND_BACKOFF_MS", "200"),
    ];
    all.extend(env.iter().map(|(k, v)| (*k, v.as_str())));
    world.watch(&all, name)
}

async fn stop(world: &World, mut child: KillOnDrop) {
    common::signal(&child, "TERM");
    let status = wait_exit(&mut child, Duration::from_secs(60)).await;
    assert_eq!(status.code(), Some(0), "{}", world.logs());
}

/// Succeeded cases that came in over DICOM (one per series).
async fn received_cases(pool: &sqlx::AnyPool) -> i64 {
    count(pool, "SELECT COUNT(*) FROM case_results WHERE status = 'succeeded' AND source_path LIKE '%/dicom-node/%'")
        .await
}

#[tokio::test]
async fn echo_works_and_callers_not_on_the_list_are_rejected() {
    let world = World::new(Backend::Sqlite).await;
    let port = free_port();
    // A pipeline that takes CT series only.
    let pipeline = world.dir.path().join("ct-only.toml");
    let model = common::repo().join("models/efen-small.onnx");
    std::fs::write(
        &pipeline,
        format!("name = \"ct-only\"\nmodel = {:?}\n[select]\nmodalities = [\"CT\"]\n", model.display().to_string()),
    )
    .unwrap();
    let child = start_node(
        &world,
        "node",
        port,
        &[
            ("EFEN_NODE__ALLOWED_CALLERS", r#"["GOODSCU"]"#.into()),
            ("EFEN_PATHS__DEFAULT_PIPELINE", pipeline.display().to_string()),
        ],
    );
    assert!(wait_listening(port, Duration::from_secs(60)).await, "efen did not listen\n{}", world.logs());
    let port_text = port.to_string();

    let (code, text) = dcmtk("echoscu", &["-v", "-aet", "GOODSCU", "-aec", "EFEN", "127.0.0.1", &port_text]);
    assert_eq!(code, Some(0), "C-ECHO from a listed caller: {text}");

    let (code, text) = dcmtk("echoscu", &["-v", "-aet", "STRANGER", "-aec", "EFEN", "127.0.0.1", &port_text]);
    assert_ne!(code, Some(0), "an unlisted caller is refused: {text}");
    assert!(text.contains("Calling AE Title Not Recognized"), "reject reason: {text}");

    let (code, text) = dcmtk("echoscu", &["-v", "-aet", "GOODSCU", "-aec", "SOMEONE", "127.0.0.1", &port_text]);
    assert_ne!(code, Some(0), "an association for another AE title is refused: {text}");
    assert!(text.contains("Called AE Title Not Recognized"), "reject reason: {text}");

    // A SOP class efen does not decode is refused at negotiation: storescu cannot send it.
    let (code, text) = dcmtk(
        "storescu",
        &[
            "-aet",
            "GOODSCU",
            "-aec",
            "EFEN",
            "127.0.0.1",
            &port_text,
            fixtures().join("pydicom_rtplan.dcm").to_str().unwrap(),
        ],
    );
    assert_ne!(code, Some(0), "RT Plan is not accepted: {text}");
    assert!(world.logs().contains("calling AE title not on node.allowed_callers"), "{}", world.logs());

    // An OT series is received (acknowledged) but not taken by a CT-only pipeline.
    let (series, files) = make_series(&world.dir.path().join("series"), &["dcmtk_gray8_implicit.dcm"], 2, "not CT");
    let mut args = vec!["-aet", "GOODSCU", "-aec", "EFEN", "127.0.0.1", &port_text];
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    let (code, text) = dcmtk("storescu", &args);
    assert_eq!(code, Some(0), "{text}");
    let ignored = world.state().join("ignored").join(&series);
    world
        .wait_for("the series to be set aside", Duration::from_secs(30), async || common::names(&ignored).len() == 2)
        .await;
    let pool = world.pool().await;
    world
        .wait_for("the audit entry", Duration::from_secs(10), async || {
            count(&pool, "SELECT COUNT(*) FROM audit_log WHERE action = 'series_ignored'").await == 1
        })
        .await;
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM cases").await, 0);
    assert!(world.logs().contains("not selected by the pipeline: modality \"OT\""), "{}", world.logs());
    pool.close().await;
    stop(&world, child).await;
    world.close().await;
}

/// The issue's "done when": a PACS sends a series and receives valid SEGs back, untouched.
#[tokio::test]
async fn orthanc_sends_a_series_and_gets_segs_back_that_match_the_masks() {
    let world = World::new(Backend::Postgres).await;
    let pool = world.pool().await;
    let port = free_port();
    let orthanc = Orthanc::start(port).await;
    let destination = format!(r#"["ORTHANC@127.0.0.1:{}"]"#, orthanc.dicom_port);
    let child = start_node(
        &world,
        "node",
        port,
        &[
            ("EFEN_NODE__ALLOWED_CALLERS", r#"["ORTHANC"]"#.into()),
            ("EFEN_NODE__DESTINATIONS", destination),
            ("EFEN_NODE__SEND_OVERLAY", "true".into()),
        ],
    );
    assert!(wait_listening(port, Duration::from_secs(60)).await, "efen did not listen\n{}", world.logs());

    // Uncompressed and compressed instances in one series, uploaded into Orthanc first.
    let templates = ["dcmtk_gray8_implicit.dcm", "dcmtk_gray8_jpegls_lossless.dcm", "dcmtk_gray8_rle.dcm"];
    let (series_uid, files) = make_series(&world.dir.path().join("series"), &templates, 24, "efen round trip");
    for file in &files {
        orthanc.post("/instances", &std::fs::read(file).unwrap());
    }
    let found = orthanc.post("/tools/lookup", series_uid.as_bytes());
    let series_id = found[0]["ID"].as_str().expect("Orthanc knows the series").to_string();

    let started = Instant::now();
    let body = serde_json::json!({ "Resources": [series_id], "Synchronous": true }).to_string();
    orthanc.post("/modalities/efen/store", body.as_bytes());
    let sent_in = started.elapsed();
    world
        .wait_for("Orthanc to accept the SEG", Duration::from_secs(180), async || {
            // Orthanc answers a C-STORE once it has stored the instance.
            count(&pool, "SELECT COUNT(*) FROM sends WHERE object = 'seg' AND status = 'accepted'").await == 1
        })
        .await;
    let round_trip = started.elapsed();
    eprintln!(
        "round trip: {} instances from Orthanc to efen in {:.2} s ({:.1} instances/s); their SEG in Orthanc after {:.2} s (series quiet time 1 s)",
        files.len(),
        sent_in.as_secs_f64(),
        files.len() as f64 / sent_in.as_secs_f64(),
        round_trip.as_secs_f64()
    );

    assert_eq!(received_cases(&pool).await, 1, "the series is one case");
    let segs = orthanc.segs();
    assert_eq!(segs.len(), 1, "one SEG for the series in Orthanc");
    let (id, tags) = &segs[0];
    let referenced = &tags["ReferencedSeriesSequence"][0];
    assert_eq!(referenced["SeriesInstanceUID"], series_uid.as_str(), "the SEG references the source series");
    assert_eq!(
        referenced["ReferencedInstanceSequence"].as_array().unwrap().len(),
        files.len(),
        "the SEG lists every source instance"
    );
    // Each frame stands for the slice it references, with that slice's foreground as recorded.
    let (case_id,): (String,) =
        sqlx::query_as("SELECT case_id FROM case_results WHERE source_path LIKE '%/dicom-node/%'")
            .fetch_one(&pool)
            .await
            .unwrap();
    let seg = orthanc.try_get(&format!("/instances/{id}/file")).unwrap();
    let frames = seg_frames(&seg);
    assert!(!frames.is_empty(), "a non-empty segmentation");
    let recorded: Vec<(String, i64)> = sqlx::query_as(
        "SELECT sop_instance_uid, foreground_px FROM series_slices WHERE case_id = $1 AND foreground_px > 0",
    )
    .bind(&case_id)
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut recorded: Vec<(String, u64)> = recorded.into_iter().map(|(sop, n)| (sop, n as u64)).collect();
    let mut framed = frames.clone();
    recorded.sort();
    framed.sort();
    assert_eq!(framed, recorded, "one SEG frame per slice with foreground, referencing it");
    assert!(world.out().join(&case_id).join("mask.nii.gz").is_file());
    // The overlays went too, as Secondary Capture images in the source's study.
    world
        .wait_for("the overlay to arrive in Orthanc", Duration::from_secs(60), async || {
            count(&pool, "SELECT COUNT(*) FROM sends WHERE object = 'overlay' AND status = 'accepted'").await == 1
        })
        .await;
    let study = orthanc.get_json(&format!("/instances/{}/tags?simplify", found_instance(&orthanc, &files[0])))["StudyInstanceUID"]
        .clone();
    let overlays: Vec<serde_json::Value> = orthanc
        .get_json("/instances")
        .as_array()
        .unwrap()
        .iter()
        .map(|id| orthanc.get_json(&format!("/instances/{}/tags?simplify", id.as_str().unwrap())))
        .filter(|tags| tags["SeriesDescription"] == "efen overlay")
        .collect();
    assert_eq!(overlays.len(), 1, "one overlay (the series' montage)");
    assert!(overlays.iter().all(|t| t["StudyInstanceUID"] == study && t["SOPClassUID"] == "1.2.840.10008.5.1.4.1.1.7"));

    // Issue 29: the measurement report went with the SEG, into the source's study; peers read it
    // (tests/sr_check.py) and find the case's volume and a reference to the SEG Orthanc holds.
    world
        .wait_for("the SR to arrive in Orthanc", Duration::from_secs(60), async || {
            count(&pool, "SELECT COUNT(*) FROM sends WHERE object = 'sr' AND status = 'accepted'").await == 1
        })
        .await;
    let srs = orthanc.instances_of("SR");
    assert_eq!((segs.len(), srs.len()), (1, 1), "exactly one SEG and one SR in Orthanc: {srs:?}");
    let (sr_id, sr_tags) = &srs[0];
    assert_eq!(sr_tags["StudyInstanceUID"], study, "the SR is in the source's study");
    assert_eq!(sr_tags["SOPClassUID"], "1.2.840.10008.5.1.4.1.1.88.34", "Comprehensive 3D SR");
    let (sr_uid,): (String,) =
        sqlx::query_as("SELECT sop_instance_uid FROM sends WHERE object = 'sr'").fetch_one(&pool).await.unwrap();
    assert_eq!(sr_tags["SOPInstanceUID"], sr_uid.as_str(), "the send records the SR's SOP Instance UID");
    let peers = world.dir.path().join("from-orthanc");
    std::fs::create_dir_all(&peers).unwrap();
    std::fs::write(peers.join("seg.dcm"), &seg).unwrap();
    std::fs::write(peers.join("sr.dcm"), orthanc.try_get(&format!("/instances/{sr_id}/file")).unwrap()).unwrap();
    let result = world.out().join(&case_id).join("result.json");
    let report = common::sr_check(&peers.join("sr.dcm"), &peers.join("seg.dcm"), &result, &["--dcmqi"]);
    let volume =
        serde_json::from_slice::<serde_json::Value>(&std::fs::read(&result).unwrap()).unwrap()["series"]["volume_ml"]
            .as_f64()
            .unwrap();
    assert!((report["volume_ml"].as_f64().unwrap() - volume).abs() < 0.01, "{report}");

    let accepted =
        count(&pool, "SELECT COUNT(*) FROM sends WHERE object = 'seg' AND status = 'accepted' AND peer_status = 0")
            .await;
    assert_eq!(accepted, 1);
    // The SEG, its SR and the overlay, each audited.
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM audit_log WHERE action = 'send_accepted'").await, 3 * accepted);
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM audit_log WHERE action = 'series_received'").await, 1);
    stop(&world, child).await;
    pool.close().await;
    world.close().await;
}

/// Orthanc's id of the instance made as `file`.
fn found_instance(orthanc: &Orthanc, file: &std::path::Path) -> String {
    let found = orthanc.post("/tools/lookup", sop_of(file).as_bytes());
    found[0]["ID"].as_str().unwrap().to_string()
}

/// A destination that is down: sends fail (recorded with the reason), then go out after a restart
/// once the destination is up.
#[tokio::test]
async fn failed_sends_are_recorded_and_retried_after_a_restart() {
    let world = World::new(Backend::Sqlite).await;
    let port = free_port();
    let pacs_port = free_port();
    let destination = format!(r#"["ARCHIVE@127.0.0.1:{pacs_port}"]"#);
    let env = [
        ("EFEN_NODE__DESTINATIONS", destination),
        ("EFEN_NODE__SEND_ATTEMPTS", "2".to_string()),
        ("EFEN_NODE__SEND_OVERLAY", "true".to_string()),
    ];
    let child = start_node(&world, "node-1", port, &env);
    assert!(wait_listening(port, Duration::from_secs(60)).await, "efen did not listen\n{}", world.logs());
    let (_, files) = make_series(&world.dir.path().join("series"), &["dcmtk_gray8_implicit.dcm"], 2, "retry");
    let mut args = vec!["-aet", "MODALITY", "-aec", "EFEN", "127.0.0.1"];
    let port_text = port.to_string();
    args.push(&port_text);
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    let (code, text) = dcmtk("storescu", &args);
    assert_eq!(code, Some(0), "{text}");

    let pool = world.pool().await;
    world
        .wait_for("the sends (the series' SEG, SR and overlay) to fail", Duration::from_secs(120), async || {
            common::try_count(&pool, "SELECT COUNT(*) FROM sends WHERE status = 'failed'").await == Some(3)
        })
        .await;
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM audit_log WHERE action = 'send_failed'").await, 3);
    let errors: Vec<(String,)> = sqlx::query_as("SELECT last_error FROM sends").fetch_all(&pool).await.unwrap();
    assert!(errors.iter().all(|(e,)| e.contains("association with ARCHIVE@")), "the reason is recorded: {errors:?}");
    stop(&world, child).await;

    // The destination comes up: storescp accepts SEGs into a folder.
    let received = world.dir.path().join("archive");
    std::fs::create_dir_all(&received).unwrap();
    let mut archive = std::process::Command::new("storescp")
        .args(["-aet", "ARCHIVE", "-od", received.to_str().unwrap(), &pacs_port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn_guarded()
        .expect("storescp (Debian dcmtk)");
    assert!(wait_listening(pacs_port, Duration::from_secs(10)).await);
    let child = start_node(&world, "node-2", port, &env);
    world
        .wait_for("the failed sends to go out after the restart", Duration::from_secs(120), async || {
            count(&pool, "SELECT COUNT(*) FROM sends WHERE status = 'accepted'").await == 3
        })
        .await;
    let names = common::names(&received);
    assert_eq!(names.len(), 3, "storescp holds the SEG, the SR and the overlay: {names:?}");
    // dciodvfy (dicom3tools) judges what went out: SEGs (SG.*), the SR and Secondary Captures (SC.*).
    for name in &names {
        let verdict = std::process::Command::new("dciodvfy").arg(received.join(name)).output().expect("dciodvfy");
        let text = format!("{}{}", String::from_utf8_lossy(&verdict.stdout), String::from_utf8_lossy(&verdict.stderr));
        assert!(!text.lines().any(|l| l.starts_with("Error")), "dciodvfy {name}:\n{text}");
    }
    stop(&world, child).await;
    let _ = archive.kill();
    let _ = archive.wait();
    pool.close().await;
    world.close().await;
}

/// 100 instances in one association; efen is killed (-9) mid-way and restarted; storescu then
/// sends what was not acknowledged. Every acknowledged instance must be processed.
#[tokio::test]
async fn a_kill_mid_series_loses_no_acknowledged_instance() {
    let world = World::new(Backend::Postgres).await;
    let pool = world.pool().await;
    let port = free_port();
    let mut child = start_node(&world, "node-1", port, &[]);
    assert!(wait_listening(port, Duration::from_secs(60)).await, "efen did not listen\n{}", world.logs());
    let (_, files) = make_series(&world.dir.path().join("series"), &["dcmtk_gray8_implicit.dcm"], 100, "kill");

    let log = world.dir.path().join("storescu-1.txt");
    let started = Instant::now();
    let mut sender = spawn_storescu("MODALITY", port, &files, &log);
    // Kill once a quarter is durable in efen's spool (storescu's own log may be buffered).
    let incoming = world.state().join("incoming");
    let spooled = || -> usize {
        std::fs::read_dir(&incoming)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| std::fs::read_dir(e.path()).map(|d| d.count()).unwrap_or(0))
            .sum()
    };
    while spooled() < 25 && sender.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = sender.wait();
    let first = acknowledged(&log);
    eprintln!(
        "killed efen after {} of {} instances were acknowledged ({:.2} s)",
        first.len(),
        files.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(first.len() < files.len(), "the kill came before the end of the series");
    assert!(incoming.exists());

    let child = start_node(&world, "node-2", port, &[]);
    assert!(wait_listening(port, Duration::from_secs(60)).await, "efen did not listen again\n{}", world.logs());
    let rest: Vec<PathBuf> = files.iter().filter(|f| !first.contains(f)).cloned().collect();
    let log = world.dir.path().join("storescu-2.txt");
    let resent = Instant::now();
    let status = spawn_storescu("MODALITY", port, &rest, &log).wait().unwrap();
    let seconds = resent.elapsed().as_secs_f64();
    assert!(status.success(), "{}", std::fs::read_to_string(&log).unwrap());
    assert_eq!(acknowledged(&log).len(), rest.len());
    eprintln!("received {} instances in {seconds:.2} s: {:.1} instances/s", rest.len(), rest.len() as f64 / seconds);

    // Every instance is a slice of exactly one succeeded series case (the part received before
    // the kill and the rest may be one case or two, as their quiet times fell).
    let segmented = "SELECT COUNT(DISTINCT s.sop_instance_uid) FROM series_slices s \
                     JOIN case_results r ON r.case_id = s.case_id WHERE r.status = 'succeeded' AND s.error IS NULL";
    world
        .wait_for("all 100 instances to be processed", Duration::from_secs(300), async || {
            count(&pool, segmented).await >= files.len() as i64
        })
        .await;
    for file in &first {
        let n: (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM series_slices s JOIN case_results r ON r.case_id = s.case_id \
             WHERE r.status = 'succeeded' AND s.sop_instance_uid = $1",
        )
        .bind(sop_of(file))
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(n.0, 1, "acknowledged instance {} was processed once", sop_of(file));
    }
    assert_eq!(count(&pool, segmented).await, files.len() as i64);
    let cases = received_cases(&pool).await;
    assert!((1..=2).contains(&cases), "the series came in as {cases} case(s)");
    stop(&world, child).await;
    pool.close().await;
    world.close().await;
}
