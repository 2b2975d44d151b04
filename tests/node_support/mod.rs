//! DICOM peers for tests/node.rs: series made from the fixtures, dcmtk's tools, and an Orthanc
//! started on free loopback ports with a generated configuration and its own storage.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{KillOnDrop, SpawnGuarded};
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;

pub fn fixtures() -> PathBuf {
    let dir = crate::common::repo().join("tests/fixtures/dicom");
    assert!(dir.join("manifest.json").is_file(), "DICOM fixtures missing: run scripts/dicom-fixtures.sh first");
    dir
}

/// A loopback port for one of the test's servers ([`crate::common::http::free_port`]).
pub fn free_port() -> u16 {
    crate::common::http::free_port()
}

pub fn new_uid() -> String {
    format!("2.25.{}", uuid::Uuid::new_v4().as_u128())
}

/// One series: `count` instances made from fixture `templates` in turn, each with its own SOP
/// Instance UID, all with one new Study and Series Instance UID, each a slice 1 mm further along
/// z (the templates all lie at z = 0, and slices at one position are duplicates efen leaves out).
/// Returns the series UID and the files (named `<sop instance uid>.dcm`).
pub fn make_series(dir: &Path, templates: &[&str], count: usize, description: &str) -> (String, Vec<PathBuf>) {
    std::fs::create_dir_all(dir).unwrap();
    let (study, series) = (new_uid(), new_uid());
    let mut files = Vec::new();
    for i in 0..count {
        let template = fixtures().join(templates[i % templates.len()]);
        let mut object = dicom_object::open_file(&template).unwrap();
        let sop = new_uid();
        object.put(DataElement::new(tags::STUDY_INSTANCE_UID, VR::UI, PrimitiveValue::from(study.as_str())));
        object.put(DataElement::new(tags::SERIES_INSTANCE_UID, VR::UI, PrimitiveValue::from(series.as_str())));
        object.put(DataElement::new(tags::SOP_INSTANCE_UID, VR::UI, PrimitiveValue::from(sop.as_str())));
        object.put(DataElement::new(tags::INSTANCE_NUMBER, VR::IS, PrimitiveValue::from((i + 1).to_string())));
        let position = format!("-100.0\\-100.0\\{i}.0");
        object.put(DataElement::new(tags::IMAGE_POSITION_PATIENT, VR::DS, PrimitiveValue::from(position.as_str())));
        object.put(DataElement::new(tags::SERIES_DESCRIPTION, VR::LO, PrimitiveValue::from(description)));
        object.put(DataElement::new(tags::MODALITY, VR::CS, PrimitiveValue::from("OT")));
        object.meta_mut().media_storage_sop_instance_uid = sop.clone();
        object.meta_mut().update_information_group_length();
        let path = dir.join(format!("{sop}.dcm"));
        object.write_to_file(&path).unwrap();
        files.push(path);
    }
    (series, files)
}

/// The SOP Instance UID a file was named after by [`make_series`].
pub fn sop_of(file: &Path) -> String {
    file.file_stem().unwrap().to_string_lossy().into_owned()
}

/// Runs a dcmtk tool to the end; returns (exit code, stdout and stderr together).
pub fn dcmtk(tool: &str, args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(tool).args(args).output().unwrap_or_else(|e| panic!("{tool} (Debian dcmtk): {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code(), text)
}

/// Waits until something accepts connections on `port`.
pub async fn wait_listening(port: u16, timeout: Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// An Orthanc of the test's own: loopback only, no authentication, `efen` as a modality.
pub struct Orthanc {
    child: KillOnDrop,
    pub http_port: u16,
    pub dicom_port: u16,
    pub dir: tempfile::TempDir,
}

/// Where Debian's `orthanc-dicomweb` puts the plugin.
const PLUGIN_DIR: &str = "/usr/lib/orthanc";

impl Orthanc {
    pub async fn start(efen_port: u16) -> Orthanc {
        Orthanc::launch(efen_port, false).await
    }

    /// With Debian's DICOMweb plugin (`orthanc-dicomweb`): QIDO-RS, WADO-RS and STOW-RS at
    /// `/dicom-web/`.
    pub async fn with_dicomweb(efen_port: u16) -> Orthanc {
        Orthanc::launch(efen_port, true).await
    }

    async fn launch(efen_port: u16, dicomweb: bool) -> Orthanc {
        let plugins: Vec<PathBuf> =
            if dicomweb {
                let plugin =
                    std::fs::read_dir(PLUGIN_DIR).into_iter().flatten().flatten().map(|e| e.path()).find(|p| {
                        p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("libOrthancDicomWeb.so"))
                    });
                vec![plugin.expect("Orthanc's DICOMweb plugin (Debian orthanc-dicomweb; scripts/system-packages.sh)")]
            } else {
                Vec::new()
            };
        let dir = tempfile::tempdir().unwrap();
        let (http_port, dicom_port) = (free_port(), free_port());
        let mut config = serde_json::json!({
            "Name": "efen-test",
            "HttpPort": http_port,
            "DicomPort": dicom_port,
            "DicomAet": "ORTHANC",
            "StorageDirectory": dir.path().join("storage"),
            "IndexDirectory": dir.path().join("index"),
            "RemoteAccessAllowed": false,
            "AuthenticationEnabled": false,
            "DicomCheckCalledAet": false,
            "DicomModalities": { "efen": ["EFEN", "127.0.0.1", efen_port] },
            "Plugins": plugins,
            "StableAge": 2,
        });
        if dicomweb {
            config["DicomWeb"] = serde_json::json!({ "Enable": true, "Root": "/dicom-web/" });
        }
        let path = dir.path().join("orthanc.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        let log = std::fs::File::create(dir.path().join("orthanc.log")).unwrap();
        let child = Command::new("/usr/sbin/Orthanc")
            .arg(&path)
            // Orthanc's DICOM side is dcmtk: without this, Nagle's algorithm costs ~50 ms per instance.
            .env("TCP_NODELAY", "1")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn_guarded()
            .expect("Orthanc (Debian orthanc)");
        let orthanc = Orthanc { child, http_port, dicom_port, dir };
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while orthanc.try_get("/system").is_none() {
            assert!(std::time::Instant::now() < deadline, "Orthanc did not start:\n{}", orthanc.log());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        orthanc
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("orthanc.log")).unwrap_or_default()
    }

    fn curl(&self, args: &[&str], path: &str) -> Option<Vec<u8>> {
        let url = format!("http://127.0.0.1:{}{path}", self.http_port);
        let output =
            Command::new("curl").args(["-sS", "-f", "--max-time", "120"]).args(args).arg(&url).output().ok()?;
        output.status.success().then_some(output.stdout)
    }

    pub fn try_get(&self, path: &str) -> Option<Vec<u8>> {
        self.curl(&[], path)
    }

    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let bytes = self.try_get(path).unwrap_or_else(|| panic!("GET {path} failed\n{}", self.log()));
        serde_json::from_slice(&bytes).unwrap()
    }

    pub fn post(&self, path: &str, body: &[u8]) -> serde_json::Value {
        let file = self.dir.path().join(format!("body-{}", uuid::Uuid::new_v4().simple()));
        std::fs::write(&file, body).unwrap();
        let data = format!("@{}", file.display());
        let bytes = self
            .curl(&["-X", "POST", "--data-binary", &data], path)
            .unwrap_or_else(|| panic!("POST {path} failed\n{}", self.log()));
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null)
    }

    /// Orthanc's instance ids whose Modality is SEG, with their simplified tags.
    pub fn segs(&self) -> Vec<(String, serde_json::Value)> {
        self.instances_of("SEG")
    }

    /// Orthanc's id and tags of every instance of `modality` it holds.
    pub fn instances_of(&self, modality: &str) -> Vec<(String, serde_json::Value)> {
        let ids = self.get_json("/instances");
        ids.as_array()
            .unwrap()
            .iter()
            .map(|id| id.as_str().unwrap().to_string())
            .filter_map(|id| {
                let tags = self.get_json(&format!("/instances/{id}/tags?simplify"));
                (tags["Modality"] == modality).then_some((id, tags))
            })
            .collect()
    }
}

/// Each frame of a multi-frame SEG: the source instance it references (Derivation Image → Source
/// Image) and its foreground pixels, read from the 1-bit Pixel Data (least significant bit first,
/// frames back to back).
pub fn seg_frames(bytes: &[u8]) -> Vec<(String, u64)> {
    let object = dicom_object::from_reader(std::io::Cursor::new(&bytes[128..])).expect("SEG readable");
    let rows = object.element(tags::ROWS).unwrap().to_int::<usize>().unwrap();
    let columns = object.element(tags::COLUMNS).unwrap().to_int::<usize>().unwrap();
    let data = object.element(tags::PIXEL_DATA).unwrap().to_bytes().unwrap();
    let items = |obj: &dicom_object::InMemDicomObject, tag| {
        obj.element(tag).unwrap().value().items().expect("a sequence").to_vec()
    };
    let groups = items(&object, tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE);
    groups
        .iter()
        .enumerate()
        .map(|(k, group)| {
            let derivation = &items(group, tags::DERIVATION_IMAGE_SEQUENCE)[0];
            let source = &items(derivation, tags::SOURCE_IMAGE_SEQUENCE)[0];
            let sop = source.element(tags::REFERENCED_SOP_INSTANCE_UID).unwrap().to_str().unwrap();
            let pixels = rows * columns;
            let on = (k * pixels..(k + 1) * pixels).filter(|i| (data[i / 8] >> (i % 8)) & 1 == 1).count() as u64;
            (sop.trim_end_matches('\0').to_string(), on)
        })
        .collect()
}

/// Spawns storescu with its verbose log in `log`: which files were acknowledged is read back
/// with [`acknowledged`].
pub fn spawn_storescu(calling: &str, port: u16, files: &[PathBuf], log: &Path) -> KillOnDrop {
    let out = std::fs::File::create(log).unwrap();
    Command::new("storescu")
        // Debian's dcmtk leaves Nagle's algorithm on: ~50 ms per instance on loopback without this.
        .env("TCP_NODELAY", "1")
        .args(["-v", "-aet", calling, "-aec", "EFEN", "127.0.0.1", &port.to_string()])
        .args(files)
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .stdin(Stdio::null())
        .spawn_guarded()
        .expect("storescu (Debian dcmtk)")
}

/// The files storescu's verbose log shows a successful C-STORE response for.
pub fn acknowledged(log: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut current: Option<PathBuf> = None;
    let mut acked = Vec::new();
    for line in text.lines() {
        if let Some(file) = line.split("Sending file: ").nth(1) {
            current = Some(PathBuf::from(file.trim()));
        } else if line.contains("Received Store Response (Success)")
            && let Some(file) = current.take()
        {
            acked.push(file);
        }
    }
    acked
}
