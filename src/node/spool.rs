//! The receive spool: each instance a C-STORE delivers is streamed into `<state>/incoming/.part/`,
//! then fsynced, renamed to `<state>/incoming/<series uid>/<sop instance uid>.dcm` and the folder
//! fsynced, all before the SCP answers success: an acknowledged image survives a crash. STOW-RS
//! (`crate::http::dicomweb`) writes whole PS3.10 files through the same spool.

use std::io::Write;
use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;

use crate::dicom::{IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION};

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("cannot write {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("received data set is not readable DICOM: {0}")]
    Unreadable(String),
    #[error("received data set has no usable Series Instance UID ({0:?})")]
    NoSeries(String),
}

impl SpoolError {
    /// A full disk or quota: the sender should try again later rather than give up.
    pub fn is_out_of_space(&self) -> bool {
        // ENOSPC (28) and EDQUOT (122) on Linux.
        matches!(self, SpoolError::Io { source, .. } if source.raw_os_error().is_some_and(|c| c == 28 || c == 122))
    }
}

/// `<state>/incoming`: one folder per series.
#[derive(Debug, Clone)]
pub struct Spool {
    pub incoming: PathBuf,
}

/// An instance being received: the temporary file and what its meta group says.
pub struct PartFile {
    path: PathBuf,
    file: std::fs::File,
    /// Empty for a whole file ([`Spool::begin_file`]): read from its data set at commit.
    sop_instance: String,
}

/// A UID safe to use as a file name: digits and dots, 1 to 64 characters.
pub fn is_plain_uid(uid: &str) -> bool {
    !uid.is_empty() && uid.len() <= 64 && uid.bytes().all(|b| b.is_ascii_digit() || b == b'.') && !uid.starts_with('.')
}

impl Spool {
    pub fn open(state: &Path) -> Result<Spool, SpoolError> {
        let incoming = state.join("incoming");
        let part = incoming.join(".part");
        std::fs::create_dir_all(&part).map_err(|source| SpoolError::Io { path: part.clone(), source })?;
        // Partial files of a connection that died with the process were never acknowledged.
        for entry in std::fs::read_dir(&part).into_iter().flatten().flatten() {
            let _ = std::fs::remove_file(entry.path());
        }
        Ok(Spool { incoming })
    }

    /// Starts an instance: the file meta group, then [`PartFile::write`] appends the data set
    /// exactly as it arrives (its encoding is the presentation context's transfer syntax).
    pub fn begin(
        &self,
        sop_class: &str,
        sop_instance: &str,
        transfer_syntax: &str,
        calling_ae: &str,
    ) -> Result<PartFile, SpoolError> {
        let path = self.incoming.join(".part").join(format!("{}.part", uuid::Uuid::new_v4().simple()));
        let io = |source| SpoolError::Io { path: path.clone(), source };
        let mut file = std::fs::File::create(&path).map_err(io)?;
        file.write_all(&file_meta(sop_class, sop_instance, transfer_syntax, calling_ae)).map_err(io)?;
        Ok(PartFile { path, file, sop_instance: sop_instance.to_string() })
    }

    /// Starts a whole PS3.10 file (preamble, meta group, data set), as a STOW-RS part brings it.
    pub fn begin_file(&self) -> Result<PartFile, SpoolError> {
        let path = self.incoming.join(".part").join(format!("{}.part", uuid::Uuid::new_v4().simple()));
        let file = std::fs::File::create(&path).map_err(|source| SpoolError::Io { path: path.clone(), source })?;
        Ok(PartFile { path, file, sop_instance: String::new() })
    }
}

impl PartFile {
    /// Where the partial file is, to read its header before it is committed.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn write(&mut self, bytes: &[u8]) -> Result<(), SpoolError> {
        self.file.write_all(bytes).map_err(|source| SpoolError::Io { path: self.path.clone(), source })
    }

    /// Makes the instance durable in its series folder; returns the series UID and the final path.
    /// Blocking (fsync): call it off the async threads.
    pub fn commit(self, spool: &Spool) -> Result<(String, PathBuf), SpoolError> {
        self.commit_inner(spool)
    }

    fn commit_inner(&self, spool: &Spool) -> Result<(String, PathBuf), SpoolError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SpoolError::Io { path, source }
        };
        // The series' quiet time counts from the commit, not from when the bytes were written: a
        // STOW-RS request writes its parts as the body streams and commits them all at its end.
        self.file.set_modified(std::time::SystemTime::now()).map_err(io(&self.path))?;
        self.file.sync_all().map_err(io(&self.path))?;
        let object = dicom_object::OpenFileOptions::new()
            .read_until(tags::PIXEL_DATA)
            .open_file(&self.path)
            .map_err(|e| SpoolError::Unreadable(e.to_string()))?;
        let series = object
            .element(tags::SERIES_INSTANCE_UID)
            .ok()
            .and_then(|e| e.to_str().ok())
            .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
            .unwrap_or_default();
        if !is_plain_uid(&series) {
            return Err(SpoolError::NoSeries(series));
        }
        let sop_instance = match self.sop_instance.as_str() {
            "" => object
                .element(tags::SOP_INSTANCE_UID)
                .ok()
                .and_then(|e| e.to_str().ok())
                .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
                .unwrap_or_default(),
            given => given.to_string(),
        };
        if !is_plain_uid(&sop_instance) {
            return Err(SpoolError::Unreadable(format!("SOP Instance UID {sop_instance:?} is not a plain UID")));
        }
        let dir = spool.incoming.join(&series);
        let target = dir.join(format!("{sop_instance}.dcm"));
        // The collector removes emptied series folders; if it just did, make the folder again.
        for attempt in 0..3 {
            let created = !dir.is_dir();
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
            if created {
                sync_dir(&spool.incoming).map_err(io(&spool.incoming))?;
            }
            match std::fs::rename(&self.path, &target) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempt < 2 => continue,
                Err(e) => return Err(io(&target)(e)),
            }
        }
        sync_dir(&dir).map_err(io(&dir))?;
        Ok((series, target))
    }

    pub fn discard(self) {}
}

/// A partial file never outlives its message: after a commit the name is gone already, and an
/// association that breaks off mid-instance leaves nothing behind.
impl Drop for PartFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// fsync of a folder, so that a rename into it is durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Preamble, `DICM` and the file meta group (Explicit VR Little Endian, PS3.10 §7.1).
fn file_meta(sop_class: &str, sop_instance: &str, transfer_syntax: &str, calling_ae: &str) -> Vec<u8> {
    fn element(out: &mut Vec<u8>, element: u16, vr: &[u8; 2], value: &[u8], pad: u8) {
        let mut value = value.to_vec();
        if value.len() % 2 == 1 {
            value.push(pad);
        }
        out.extend_from_slice(&2u16.to_le_bytes());
        out.extend_from_slice(&element.to_le_bytes());
        out.extend_from_slice(vr);
        if vr == b"OB" {
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        } else {
            out.extend_from_slice(&(value.len() as u16).to_le_bytes());
        }
        out.extend_from_slice(&value);
    }
    let mut group = Vec::new();
    element(&mut group, 0x0001, b"OB", &[0, 1], 0);
    element(&mut group, 0x0002, b"UI", sop_class.as_bytes(), 0);
    element(&mut group, 0x0003, b"UI", sop_instance.as_bytes(), 0);
    element(&mut group, 0x0010, b"UI", transfer_syntax.as_bytes(), 0);
    element(&mut group, 0x0012, b"UI", IMPLEMENTATION_CLASS_UID.as_bytes(), 0);
    element(&mut group, 0x0013, b"SH", IMPLEMENTATION_VERSION.as_bytes(), b' ');
    if !calling_ae.is_empty() {
        element(&mut group, 0x0016, b"AE", calling_ae.as_bytes(), b' ');
    }
    let mut out = vec![0u8; 128];
    out.extend_from_slice(b"DICM");
    out.extend_from_slice(&[2, 0, 0, 0]);
    out.extend_from_slice(b"UL");
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&(group.len() as u32).to_le_bytes());
    out.extend_from_slice(&group);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_encoding::TransferSyntaxIndex;
    use dicom_object::InMemDicomObject;

    #[test]
    fn a_received_data_set_becomes_a_readable_file_in_its_series_folder() {
        let state = tempfile::tempdir().unwrap();
        let spool = Spool::open(state.path()).unwrap();
        let mut data = InMemDicomObject::new_empty();
        data.put(DataElement::new(tags::SERIES_INSTANCE_UID, VR::UI, PrimitiveValue::from("1.2.3")));
        data.put(DataElement::new(tags::SOP_INSTANCE_UID, VR::UI, PrimitiveValue::from("1.2.3.4")));
        let ts = dicom_transfer_syntax_registry::TransferSyntaxRegistry.get("1.2.840.10008.1.2").unwrap();
        let mut bytes = Vec::new();
        data.write_dataset_with_ts(&mut bytes, ts).unwrap();

        let mut part = spool.begin("1.2.840.10008.5.1.4.1.1.7", "1.2.3.4", "1.2.840.10008.1.2", "MODALITY").unwrap();
        part.write(&bytes).unwrap();
        let (series, path) = part.commit(&spool).unwrap();
        assert_eq!(series, "1.2.3");
        assert_eq!(path, state.path().join("incoming/1.2.3/1.2.3.4.dcm"));
        let back = dicom_object::open_file(&path).unwrap();
        assert_eq!(back.meta().transfer_syntax(), "1.2.840.10008.1.2");
        assert_eq!(back.element(tags::SOP_INSTANCE_UID).unwrap().to_str().unwrap(), "1.2.3.4");
        assert_eq!(std::fs::read_dir(state.path().join("incoming/.part")).unwrap().count(), 0);
    }

    #[test]
    fn a_whole_file_is_named_after_its_own_sop_instance() {
        let state = tempfile::tempdir().unwrap();
        let spool = Spool::open(state.path()).unwrap();
        let mut data = InMemDicomObject::new_empty();
        data.put(DataElement::new(tags::SOP_CLASS_UID, VR::UI, PrimitiveValue::from("1.2.840.10008.5.1.4.1.1.7")));
        data.put(DataElement::new(tags::SERIES_INSTANCE_UID, VR::UI, PrimitiveValue::from("1.2.3")));
        data.put(DataElement::new(tags::SOP_INSTANCE_UID, VR::UI, PrimitiveValue::from("1.2.3.9")));
        let file =
            data.with_meta(dicom_object::FileMetaTableBuilder::new().transfer_syntax("1.2.840.10008.1.2.1")).unwrap();
        let mut bytes = Vec::new();
        file.write_all(&mut bytes).unwrap();

        let mut part = spool.begin_file().unwrap();
        part.write(&bytes).unwrap();
        let (series, path) = part.commit(&spool).unwrap();
        assert_eq!((series.as_str(), path), ("1.2.3", state.path().join("incoming/1.2.3/1.2.3.9.dcm")));
        assert_eq!(std::fs::read(state.path().join("incoming/1.2.3/1.2.3.9.dcm")).unwrap(), bytes, "kept as sent");

        let dropped = spool.begin_file().unwrap();
        drop(dropped);
        assert_eq!(std::fs::read_dir(state.path().join("incoming/.part")).unwrap().count(), 0);
    }

    #[test]
    fn garbage_is_refused_and_leaves_nothing() {
        let state = tempfile::tempdir().unwrap();
        let spool = Spool::open(state.path()).unwrap();
        let mut part = spool.begin("1.2", "1.2.5", "1.2.840.10008.1.2", "X").unwrap();
        part.write(b"\x08\x00\x20\x00junk").unwrap();
        assert!(part.commit(&spool).is_err());
        assert_eq!(std::fs::read_dir(state.path().join("incoming/.part")).unwrap().count(), 0);
    }

    #[test]
    fn uids_that_could_escape_a_folder_are_not_plain() {
        assert!(is_plain_uid("1.2.840.10008"));
        assert!(!is_plain_uid("../etc") && !is_plain_uid("") && !is_plain_uid("1/2") && !is_plain_uid(".1"));
    }
}
