//! DICOMweb STOW-RS through the real binary (issue 15, item 5): a series posted to efen's
//! `/dicomweb/studies` becomes one case through the DICOM node's spool, and its SEG goes by
//! STOW-RS to an Orthanc with Debian's DICOMweb plugin; bodies that are cut, oversized, of the wrong
//! type, or with parts that are not images are refused as PS3.18 says, and store nothing they
//! should not.

mod common;
mod node_support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::http::{Answer, stop, wait_ready};
use common::{Backend, KillOnDrop, World, count};
use dicom_dictionary_std::tags;
use node_support::{Orthanc, free_port};

const BOUNDARY: &str = "efen-test-boundary-7d1f";
const CT_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.2";
const SEG_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.66.4";

/// What a Store Instances Response (PS3.18) holds.
trait StoreInstancesResponse {
    /// The SOP Instance UIDs of a sequence (`00081199` referenced, `00081198` failed).
    fn instances(&self, sequence: &str) -> Vec<String>;
    fn items(&self, sequence: &str) -> Vec<serde_json::Value>;
}

impl StoreInstancesResponse for Answer {
    fn instances(&self, sequence: &str) -> Vec<String> {
        self.items(sequence)
            .iter()
            .map(|item| item["00081155"]["Value"][0].as_str().unwrap_or_default().to_string())
            .collect()
    }

    fn items(&self, sequence: &str) -> Vec<serde_json::Value> {
        self.json()[sequence]["Value"].as_array().cloned().unwrap_or_default()
    }
}

/// `POST` with `content_type`; `declared` is the Content-Length sent when a test breaks off on
/// purpose ([`common::http::exchange`]).
fn post(port: u16, path: &str, content_type: &str, body: &[u8], declared: Option<usize>) -> Answer {
    let headers = [("Content-Type", content_type)];
    common::http::exchange(port, "POST", path, &headers, body, declared).unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

const STOW: &str = "multipart/related; type=\"application/dicom\"; boundary=efen-test-boundary-7d1f";

/// A STOW-RS body: one `application/dicom` part per file (or the given content type and bytes).
fn multipart(parts: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (content_type, bytes) in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\nContent-Type: {content_type}\r\n\r\n").as_bytes());
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

fn dicom_parts(files: &[PathBuf]) -> Vec<(&'static str, Vec<u8>)> {
    files.iter().map(|f| ("application/dicom", std::fs::read(f).unwrap())).collect()
}

/// The CT series fixture (scripts/series-fixtures.sh): its files, sorted, and its Series and
/// Study Instance UIDs.
fn ct_series() -> (Vec<PathBuf>, String, String) {
    let dir = common::repo().join("tests/fixtures/series");
    assert!(dir.join("manifest.json").is_file(), "run scripts/series-fixtures.sh (scripts/test.sh does)");
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(dir.join("ct_sphere")).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let first = dicom_object::open_file(&files[0]).unwrap();
    let uid = |tag| first.element(tag).unwrap().to_str().unwrap().trim_end_matches('\0').to_string();
    let (series, study) = (uid(tags::SERIES_INSTANCE_UID), uid(tags::STUDY_INSTANCE_UID));
    (files, series, study)
}

fn sop_instance(file: &Path) -> String {
    let object = dicom_object::open_file(file).unwrap();
    object.element(tags::SOP_INSTANCE_UID).unwrap().to_str().unwrap().trim_end_matches('\0').to_string()
}

/// Every file below `dir`, recursively.
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_below(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// `efen watch` with the HTTP face on `port` and no Storage SCP, sending soon after a failure and
/// taking a series after 1 s of quiet.
fn start_watch(world: &World, port: u16, env: &[(&str, String)]) -> KillOnDrop {
    let quick = [("EFEN_NODE__SEND_BACKOFF_MS", "200"), ("EFEN_WATCH__SERIES_QUIET_MS", "1000")];
    let env: Vec<(&str, &str)> = quick.into_iter().chain(env.iter().map(|(k, v)| (*k, v.as_str()))).collect();
    common::http::start_watch(world, port, &env, "efen")
}

/// The issue's "done when" for DICOMweb: a series in by STOW-RS, one case, its SEG out by STOW-RS to
/// Orthanc, the send recorded as accepted and audited.
#[tokio::test]
async fn a_series_stored_by_stow_rs_comes_back_to_orthanc_as_a_seg_by_stow_rs() {
    let world = World::new(Backend::Postgres).await;
    let orthanc = Orthanc::with_dicomweb(free_port()).await;
    let port = free_port();
    let destination = format!("dicomweb:http://127.0.0.1:{}/dicom-web", orthanc.http_port);
    let mut child = start_watch(
        &world,
        port,
        &[
            ("EFEN_NODE__SERIES_QUIET_MS", "1000".into()),
            // Written with a trailing slash, recorded without.
            ("EFEN_NODE__DESTINATIONS", format!(r#"["{destination}/"]"#)),
        ],
    );
    wait_ready(&world, &mut child, port).await;

    let (files, series_uid, study_uid) = ct_series();
    let body = multipart(&dicom_parts(&files));
    let started = std::time::Instant::now();
    let answer = post(port, &format!("/dicomweb/studies/{study_uid}"), STOW, &body, None);
    let stored_in = started.elapsed();
    assert_eq!(answer.status, 200, "{}\n{}\n{}", answer.head, String::from_utf8_lossy(&answer.body), world.logs());
    assert_eq!(answer.headers("content-type"), ["application/dicom+json"]);
    let referenced: BTreeSet<String> = answer.instances("00081199").into_iter().collect();
    let sent: BTreeSet<String> = files.iter().map(|f| sop_instance(f)).collect();
    assert_eq!((referenced.len(), &referenced), (24, &sent), "every instance is referenced once");
    assert!(answer.items("00081199").iter().all(|item| item["00081150"]["Value"][0] == CT_STORAGE));
    assert!(answer.json().get("00081198").is_none(), "nothing failed: {}", answer.json());

    let pool = world.pool().await;
    world
        .wait_for("the series case to succeed", Duration::from_secs(120), async || {
            count(
                &pool,
                "SELECT COUNT(*) FROM case_results WHERE status = 'succeeded' AND source_path LIKE '%/dicom-node/%'",
            )
            .await
                == 1
        })
        .await;
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM cases").await, 1, "the series is one case");
    let (slices,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM series_slices").fetch_one(&pool).await.unwrap();
    assert_eq!(slices, 24);

    world
        .wait_for("the SEG and its SR to be accepted by Orthanc", Duration::from_secs(60), async || {
            count(&pool, "SELECT COUNT(*) FROM sends WHERE status = 'accepted'").await == 2
        })
        .await;
    eprintln!(
        "STOW-RS: {} instances ({} KiB) stored in {:.2} s; their SEG in Orthanc by STOW-RS after {:.2} s (series quiet time 1 s)",
        files.len(),
        body.len() / 1024,
        stored_in.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    let (recorded, seg_uid): (String, String) =
        sqlx::query_as("SELECT destination, sop_instance_uid FROM sends WHERE object = 'seg'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(recorded, destination);
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM sends WHERE status = 'accepted' AND peer_status = 0").await, 2);
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM audit_log WHERE action = 'send_accepted'").await, 2);
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM audit_log WHERE action = 'series_received'").await, 1);

    // Orthanc has it, as its QIDO-RS and its own REST API say: a SEG of the series that was posted.
    let found = orthanc.get_json(&format!("/dicom-web/instances?SOPInstanceUID={seg_uid}"));
    assert_eq!(found.as_array().map(Vec::len), Some(1), "{found}");
    assert_eq!(found[0]["00080016"]["Value"][0], SEG_STORAGE, "{found}");
    let segs = orthanc.segs();
    assert_eq!(segs.len(), 1, "{segs:?}");
    let (_, seg) = &segs[0];
    assert_eq!(seg["SOPInstanceUID"], seg_uid.as_str());
    assert_eq!(seg["StudyInstanceUID"], study_uid.as_str());
    let source = &seg["ReferencedSeriesSequence"][0];
    assert_eq!(source["SeriesInstanceUID"], series_uid.as_str(), "{seg}");
    assert_eq!(source["ReferencedInstanceSequence"].as_array().map(Vec::len), Some(24), "every slice referenced");
    // Issue 29: its measurement report by STOW-RS too, in the same study, naming that SEG.
    let srs = orthanc.instances_of("SR");
    assert_eq!(srs.len(), 1, "{srs:?}");
    let (_, sr) = &srs[0];
    assert_eq!(sr["StudyInstanceUID"], study_uid.as_str());
    let text = sr.to_string();
    assert!(text.contains(&seg_uid), "the SR references the SEG {seg_uid}: {text}");
    pool.close().await;
    stop(&world, child).await;
    world.close().await;
}

/// Bad input: a cut body and a broken-off connection store nothing (400); a part that is not DICOM
/// and one that is not an image are refused beside the good ones (202); an instance of another
/// study is refused (409); another media type is 415; an oversized body 413.
#[tokio::test]
async fn stow_rs_refuses_what_it_cannot_store_and_stores_nothing_half() {
    let world = World::new(Backend::Sqlite).await;
    let port = free_port();
    // A long quiet time keeps what was stored in the spool, where the test counts it.
    let env = [("EFEN_NODE__SERIES_QUIET_MS", "600000".to_string()), ("EFEN_ENGINE__MAX_FILE_MB", "1".to_string())];
    let mut child = start_watch(&world, port, &env);
    wait_ready(&world, &mut child, port).await;
    let incoming = world.state().join("incoming");
    let stored = || files_below(&incoming);
    let (files, series_uid, study_uid) = ct_series();
    let three = multipart(&dicom_parts(&files[..3]));

    // Cut in the middle of the second part, sent whole: malformed.
    let cut = &three[..three.len() / 2];
    let answer = post(port, "/dicomweb/studies", STOW, cut, None);
    assert_eq!(answer.status, 400, "{}", String::from_utf8_lossy(&answer.body));
    assert_eq!(answer.json()["error"], "bad_request");
    assert!(answer.json()["message"].as_str().unwrap().contains("cut or malformed"), "{}", answer.json());
    assert_eq!(stored(), Vec::<PathBuf>::new(), "a cut body stores nothing");

    // The client goes away halfway through a body it said was whole.
    let answer = post(port, "/dicomweb/studies", STOW, cut, Some(three.len()));
    assert_eq!(answer.status, 400, "{}", String::from_utf8_lossy(&answer.body));
    assert_eq!(stored(), Vec::<PathBuf>::new(), "a broken-off body stores nothing");

    // Three CT instances, bytes that are not DICOM, and a SEG (not an image): 202.
    let seg = common::repo().join("tests/fixtures/series/ct_sphere_seg.dcm");
    let mut parts = dicom_parts(&files[..3]);
    parts.insert(1, ("application/dicom", b"this is not DICOM at all".to_vec()));
    parts.push(("application/dicom", std::fs::read(&seg).unwrap()));
    let answer = post(port, "/dicomweb/studies", STOW, &multipart(&parts), None);
    assert_eq!(answer.status, 202, "{}", String::from_utf8_lossy(&answer.body));
    let good: Vec<String> = files[..3].iter().map(|f| sop_instance(f)).collect();
    assert_eq!(answer.instances("00081199"), good);
    let failed = answer.items("00081198");
    assert_eq!(failed.len(), 2, "{}", answer.json());
    assert_eq!(failed[0]["00081197"]["Value"][0], 0xC000, "not DICOM: cannot understand");
    assert!(failed[0]["00081155"].get("Value").is_none(), "no UID to name");
    assert_eq!(failed[1]["00081197"]["Value"][0], 0x0122, "a SEG: SOP class not supported");
    assert_eq!(failed[1]["00081155"]["Value"][0], sop_instance(&seg).as_str());
    let warnings = answer.headers("warning");
    assert_eq!(warnings.len(), 2, "{}", answer.head);
    assert!(warnings[0].starts_with("299 efen \"part 2 refused with C000"), "{warnings:?}");
    assert!(warnings[1].contains("is not an image storage class"), "{warnings:?}");
    let mut names: Vec<String> =
        stored().iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    names.sort();
    let mut expected: Vec<String> = good.iter().map(|uid| format!("{uid}.dcm")).collect();
    expected.sort();
    assert_eq!(names, expected, "the three instances, and nothing else");
    assert!(stored().iter().all(|p| p.parent().unwrap() == incoming.join(&series_uid)), "{:?}", stored());

    // An instance of another study than the one posted to: 409, C409.
    let answer = post(port, "/dicomweb/studies/1.2.3.4", STOW, &multipart(&dicom_parts(&files[3..4])), None);
    assert_eq!(answer.status, 409, "{}", String::from_utf8_lossy(&answer.body));
    assert_eq!(answer.items("00081198")[0]["00081197"]["Value"][0], 0xC409);
    assert_eq!(answer.instances("00081198"), [sop_instance(&files[3])]);
    // The same instance posted to its own study is stored.
    let answer =
        post(port, &format!("/dicomweb/studies/{study_uid}"), STOW, &multipart(&dicom_parts(&files[3..4])), None);
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));

    // Not multipart/related DICOM: 415.
    let bare = std::fs::read(&files[0]).unwrap();
    let answer = post(port, "/dicomweb/studies", "application/dicom", &bare, None);
    assert_eq!((answer.status, answer.json()["error"].as_str()), (415, Some("unsupported_media_type")));
    let json_parts = "multipart/related; type=\"application/dicom+json\"; boundary=efen-test-boundary-7d1f";
    assert_eq!(post(port, "/dicomweb/studies", json_parts, &three, None).status, 415);

    // Over engine.max_file_mb (1 MiB here): 413, refused on its declared length.
    let large = multipart(&[("application/dicom", vec![0u8; 3 << 20])]);
    let answer = post(port, "/dicomweb/studies", STOW, &large, None);
    assert_eq!((answer.status, answer.json()["error"].as_str()), (413, Some("too_large")));

    assert_eq!(stored().len(), 4, "{:?}", stored());
    assert!(!world.logs().contains("panicked"), "{}", world.logs());
    stop(&world, child).await;
    world.close().await;
}

/// Issue 25: one STOW-RS request is one case, however slowly its body comes. The body streams over
/// 4 s with 1 s quiet times on both sides; its parts are committed at its end, and the series'
/// quiet time counts from there, so the collector never hands on part of it.
#[tokio::test]
async fn a_slowly_streamed_stow_rs_request_is_one_case() {
    use std::io::{Read, Write};
    let world = World::new(Backend::Sqlite).await;
    let port = free_port();
    let mut child = start_watch(&world, port, &[("EFEN_NODE__SERIES_QUIET_MS", "1000".into())]);
    wait_ready(&world, &mut child, port).await;
    let (files, series_uid, _) = ct_series();
    let body = multipart(&dicom_parts(&files));

    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    write!(
        stream,
        "POST /dicomweb/studies HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {STOW}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    let started = std::time::Instant::now();
    for chunk in body.chunks(body.len().div_ceil(16)) {
        stream.write_all(chunk).unwrap();
        std::thread::sleep(Duration::from_millis(250));
    }
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"), "{answer}");
    eprintln!("STOW-RS of {} instances streamed over {:.1} s", files.len(), started.elapsed().as_secs_f64());

    let pool = world.pool().await;
    world
        .wait_for("the series' case", Duration::from_secs(120), async || {
            count(&pool, "SELECT COUNT(*) FROM case_results WHERE status = 'succeeded'").await >= 1
        })
        .await;
    // Longer than both quiet times again: a split-off piece would be a second case by now.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let cases: Vec<(i64,)> =
        sqlx::query_as("SELECT CAST(frames AS BIGINT) FROM dicom_series WHERE series_instance_uid = $1")
            .bind(&series_uid)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(cases, [(files.len() as i64,)], "one case of every instance\n{}", world.logs());
    common::http::stop(&world, child).await;
    pool.close().await;
    world.close().await;
}
