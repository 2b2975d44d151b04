//! Where an input goes when its case ends: `<state>/failed/<name>` beside `<name>.reason.txt`, or
//! `<state>/done/<name>`; the instances of a DICOM series go to `<state>/done/series/<series uid>/`,
//! where instances of the series that come later find them ([`series_done_dir`]). Watch mode moves
//! the claimed file; run mode copies failed inputs and leaves the original where the user keeps it.

use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    Move,
    Copy,
}

/// Puts `file` into `<state>/failed/` and writes the reason beside it. Returns the new path.
pub fn fail(
    state: &Path,
    file: &Path,
    original: &Path,
    case_id: &str,
    stage: &str,
    reason: &str,
    transfer: Transfer,
) -> std::io::Result<PathBuf> {
    let target = place(state, "failed", file, original, case_id, transfer)?;
    let mut note = std::fs::File::create(reason_path(&target))?;
    writeln!(note, "file: {}", original.display())?;
    writeln!(note, "case: {case_id}")?;
    writeln!(note, "stage: {stage}")?;
    writeln!(note, "reason: {reason}")?;
    writeln!(note, "at: {}", chrono::Utc::now().to_rfc3339())?;
    note.sync_all()?;
    Ok(target)
}

/// Moves a finished claimed file into `<state>/done/`.
pub fn done(state: &Path, file: &Path, original: &Path, case_id: &str) -> std::io::Result<PathBuf> {
    place(state, "done", file, original, case_id, Transfer::Move)
}

/// Moves a finished instance of a DICOM series into its series' folder under `<state>/done/`; an
/// instance already there (an earlier instance of the series, in a case again) stays.
pub fn series_done(
    state: &Path,
    series_uid: &str,
    file: &Path,
    original: &Path,
    case_id: &str,
) -> std::io::Result<PathBuf> {
    let dir = series_done_dir(state, series_uid);
    if file.parent() == Some(dir.as_path()) {
        return Ok(file.to_path_buf());
    }
    let folder = dir.strip_prefix(state).expect("below the state folder").to_string_lossy().into_owned();
    place(state, &folder, file, original, case_id, Transfer::Move)
}

/// `<state>/done/series/<series uid>`: every instance of the series that was segmented. A UID is
/// digits and dots; anything else is replaced, so the name is always one plain folder.
pub fn series_done_dir(state: &Path, series_uid: &str) -> PathBuf {
    let name: String = series_uid.chars().map(|c| if c.is_ascii_digit() || c == '.' { c } else { '_' }).collect();
    let name = if name.is_empty() || name.starts_with('.') { format!("_{name}") } else { name };
    state.join("done").join("series").join(name)
}

pub fn reason_path(failed_file: &Path) -> PathBuf {
    let mut name = failed_file.file_name().unwrap_or_default().to_os_string();
    name.push(".reason.txt");
    failed_file.with_file_name(name)
}

/// `<state>/<folder>/<original name>`, or `<stem>-<case id>.<ext>` when that name is taken.
fn place(
    state: &Path,
    folder: &str,
    file: &Path,
    original: &Path,
    case_id: &str,
    transfer: Transfer,
) -> std::io::Result<PathBuf> {
    let dir = state.join(folder);
    std::fs::create_dir_all(&dir)?;
    let name = original.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| case_id.to_string());
    let mut target = dir.join(&name);
    if target.exists() || std::fs::symlink_metadata(&target).is_ok() {
        let path = Path::new(&name);
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let unique = match path.extension() {
            Some(ext) => format!("{stem}-{case_id}.{}", ext.to_string_lossy()),
            None => format!("{stem}-{case_id}"),
        };
        target = dir.join(unique);
    }
    match transfer {
        Transfer::Move => std::fs::rename(file, &target)?,
        // A symlink is recorded as a link, never followed out of the drop folder.
        Transfer::Copy if std::fs::symlink_metadata(file)?.file_type().is_symlink() => {
            std::os::unix::fs::symlink(std::fs::read_link(file)?, &target)?
        }
        Transfer::Copy => {
            std::fs::copy(file, &target)?;
        }
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_inputs_keep_their_name_and_get_a_reason() {
        let state = tempfile::tempdir().unwrap();
        let drop = tempfile::tempdir().unwrap();
        let input = drop.path().join("bad file.png");
        std::fs::write(&input, b"junk").unwrap();
        let first = fail(state.path(), &input, &input, "c1", "decode", "corrupt", Transfer::Copy).unwrap();
        assert_eq!(first, state.path().join("failed").join("bad file.png"));
        assert!(input.exists(), "copy leaves the input in place");
        let reason = std::fs::read_to_string(reason_path(&first)).unwrap();
        assert!(reason.contains("stage: decode") && reason.contains("reason: corrupt"), "{reason}");
        let second = fail(state.path(), &input, &input, "c2", "decode", "corrupt", Transfer::Move).unwrap();
        assert_eq!(second, state.path().join("failed").join("bad file-c2.png"));
        assert!(!input.exists(), "move takes the input away");
    }
}
