//! Series: instances wait in `<state>/incoming/<series uid>/` until no instance has been committed
//! for the quiet time (Orthanc's stable age, mercure's series timeout). Each instance of a complete
//! series is checked against the pipeline's `[select]` rules (its own header, so the answer never
//! depends on which file sorts first), and the ones it takes are claimed for this worker, file by
//! file, into `<state>/claimed/<worker>/<token>/dicom-node/<series uid>/` (as the drop-folder
//! watcher would claim `<drop>/dicom-node/<series uid>/`) and handed to admission as one complete
//! series: no second settle, parse or quiet time. The instances the pipeline does not take (a
//! localizer in a CT series, images below `min_size`) go to `<state>/ignored/<series uid>/`.
//! Everything lives in folders, so a restart resumes where the last process stopped (a claimed
//! series is redone).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use dicom_dictionary_std::tags;
use serde::{Deserialize, Serialize};

use super::spool::sync_dir;
use crate::ingest::Candidate;
use crate::ingest::watch::Claimed;

/// Which instances a pipeline takes (`[select]` in the pipeline file), each judged by its own
/// header. Every rule that is set must hold; an empty list or an absent size allows anything.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SelectConfig {
    /// Modality (0008,0060) values, e.g. `["CT", "MR"]`.
    #[serde(default)]
    pub modalities: Vec<String>,
    /// SOP Class UIDs.
    #[serde(default)]
    pub sop_classes: Vec<String>,
    /// Series Description patterns (`*` and `?`, case-insensitive); one must match.
    #[serde(default)]
    pub series_description: Vec<String>,
    /// Series Description patterns that exclude a series (localizers, scouts, dose reports).
    #[serde(default)]
    pub exclude_series_description: Vec<String>,
    /// Smallest image, `[rows, columns]`.
    pub min_size: Option<[u32; 2]>,
    /// Largest image, `[rows, columns]`.
    pub max_size: Option<[u32; 2]>,
    /// Image Type (0008,0008) values of which an instance must have one (e.g. `["AXIAL"]`).
    pub image_type: Vec<String>,
    /// Image Type values that exclude an instance: by default `LOCALIZER` (scouts, scanograms).
    pub exclude_image_type: Vec<String>,
}

impl Default for SelectConfig {
    fn default() -> Self {
        SelectConfig {
            modalities: Vec::new(),
            sop_classes: Vec::new(),
            series_description: Vec::new(),
            exclude_series_description: Vec::new(),
            min_size: None,
            max_size: None,
            image_type: Vec::new(),
            exclude_image_type: vec!["LOCALIZER".into()],
        }
    }
}

/// What the rules look at, from the first instance of a series.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeriesHeader {
    pub modality: String,
    pub sop_class: String,
    pub description: String,
    pub rows: u32,
    pub columns: u32,
    /// Image Type (0008,0008): ORIGINAL\\PRIMARY\\AXIAL, DERIVED\\SECONDARY, …\\LOCALIZER.
    pub image_type: Vec<String>,
}

impl SeriesHeader {
    pub fn read(path: &Path) -> Result<SeriesHeader, String> {
        let object = dicom_object::OpenFileOptions::new()
            .read_until(tags::PIXEL_DATA)
            .open_file(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let text = |tag| {
            object.element(tag).ok().and_then(|e| e.to_str().ok()).map(|s| s.trim().to_string()).unwrap_or_default()
        };
        let number = |tag| object.element(tag).ok().and_then(|e| e.to_int::<u32>().ok()).unwrap_or(0);
        Ok(SeriesHeader {
            modality: text(tags::MODALITY),
            sop_class: text(tags::SOP_CLASS_UID).trim_end_matches('\0').to_string(),
            description: text(tags::SERIES_DESCRIPTION),
            rows: number(tags::ROWS),
            columns: number(tags::COLUMNS),
            image_type: text(tags::IMAGE_TYPE)
                .split('\\')
                .map(|v| v.trim().to_ascii_uppercase())
                .filter(|v| !v.is_empty())
                .collect(),
        })
    }
}

impl SelectConfig {
    /// `Err(reason)` when the pipeline does not take the series.
    pub fn check(&self, header: &SeriesHeader) -> Result<(), String> {
        if !self.modalities.is_empty() && !self.modalities.iter().any(|m| m.eq_ignore_ascii_case(&header.modality)) {
            return Err(format!("modality {:?} is not one of {:?}", header.modality, self.modalities));
        }
        if !self.sop_classes.is_empty() && !self.sop_classes.contains(&header.sop_class) {
            return Err(format!("SOP class {} is not selected", header.sop_class));
        }
        if !self.series_description.is_empty()
            && !self.series_description.iter().any(|p| glob_match(p, &header.description))
        {
            return Err(format!("series description matches none of {:?}", self.series_description));
        }
        if let Some(p) = self.exclude_series_description.iter().find(|p| glob_match(p, &header.description)) {
            return Err(format!("series description matches the exclusion {p:?}"));
        }
        if let Some([rows, columns]) = self.min_size
            && (header.rows < rows || header.columns < columns)
        {
            return Err(format!("image {}x{} is below min_size {rows}x{columns}", header.rows, header.columns));
        }
        if let Some([rows, columns]) = self.max_size
            && (header.rows > rows || header.columns > columns)
        {
            return Err(format!("image {}x{} is above max_size {rows}x{columns}", header.rows, header.columns));
        }
        let has = |value: &String| header.image_type.iter().any(|v| v.eq_ignore_ascii_case(value));
        if !self.image_type.is_empty() && !self.image_type.iter().any(has) {
            return Err(format!("image type {} has none of {:?}", header.image_type.join("\\"), self.image_type));
        }
        if let Some(value) = self.exclude_image_type.iter().find(|v| has(v)) {
            return Err(format!("image type {} is excluded ({value})", header.image_type.join("\\")));
        }
        Ok(())
    }
}

/// `*` (any run) and `?` (one character), ASCII case-insensitive.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) =
        (pattern.to_lowercase().chars().collect(), text.to_lowercase().chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// What the collector did with a complete series.
#[derive(Debug, Clone)]
pub enum SeriesOutcome {
    /// The instances taken, claimed for admission; `left_out` were not selected (with the first
    /// reason).
    Dispatched {
        series: String,
        claimed: Vec<Claimed>,
        left_out: Option<(usize, String)>,
    },
    Ignored {
        series: String,
        instances: usize,
        reason: String,
    },
}

/// Moves complete series out of the spool.
#[derive(Debug, Clone)]
pub struct Collector {
    pub incoming: PathBuf,
    /// The watched drop folder: a claimed instance is recorded as if it had been dropped into
    /// `<drop>/dicom-node/<series uid>/` (its origin, the DICOM node, is in that path).
    pub drop_dir: PathBuf,
    /// This worker's claim folder, `<state>/claimed/<worker>`.
    pub claimed_dir: PathBuf,
    /// `<state>/ignored`.
    pub ignored: PathBuf,
    pub quiet: Duration,
    pub rules: SelectConfig,
}

impl Collector {
    /// One pass over the spool (blocking). Errors are logged; what failed stays for the next pass.
    pub fn collect(&self) -> Vec<SeriesOutcome> {
        let mut outcomes = Vec::new();
        let mut folders: Vec<PathBuf> = std::fs::read_dir(&self.incoming)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
            .collect();
        folders.sort();
        for folder in folders {
            match self.collect_series(&folder) {
                Ok(Some(outcome)) => outcomes.push(outcome),
                Ok(None) => {}
                Err(e) => tracing::error!(folder = %folder.display(), "cannot hand over a received series: {e}"),
            }
        }
        outcomes
    }

    fn collect_series(&self, folder: &Path) -> std::io::Result<Option<SeriesOutcome>> {
        let series = folder.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let mut files: Vec<PathBuf> = std::fs::read_dir(folder)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
            .collect();
        files.sort();
        if files.is_empty() {
            // Empty: remove it (the SCP makes it again if an instance arrives meanwhile).
            let _ = std::fs::remove_dir(folder);
            return Ok(None);
        }
        // The spool sets each instance's time at its commit.
        let newest = files.iter().filter_map(|f| f.metadata().and_then(|m| m.modified()).ok()).max();
        let quiet_for = newest.and_then(|t| SystemTime::now().duration_since(t).ok()).unwrap_or_default();
        if quiet_for < self.quiet {
            return Ok(None);
        }
        let (mut taken, mut left_out): (Vec<&PathBuf>, Vec<(&PathBuf, String)>) = (Vec::new(), Vec::new());
        for file in &files {
            match SeriesHeader::read(file).and_then(|header| self.rules.check(&header)) {
                Ok(()) => taken.push(file),
                Err(reason) => left_out.push((file, reason)),
            }
        }
        let first_reason = left_out.first().map(|(_, reason)| reason.clone());
        move_all(left_out.iter().map(|(f, _)| *f), &self.ignored.join(&series))?;
        let outcome = if taken.is_empty() {
            SeriesOutcome::Ignored { series, instances: files.len(), reason: first_reason.unwrap_or_default() }
        } else {
            let claimed = self.claim(&series, &taken)?;
            SeriesOutcome::Dispatched { series, claimed, left_out: first_reason.map(|r| (left_out.len(), r)) }
        };
        let _ = std::fs::remove_dir(folder);
        Ok(Some(outcome))
    }

    /// Claims `files` of `series` for this worker, where a restart finds them as claimed files
    /// of `<drop>/dicom-node/<series>/` to redo.
    fn claim(&self, series: &str, files: &[&PathBuf]) -> std::io::Result<Vec<Claimed>> {
        let token = &uuid::Uuid::new_v4().simple().to_string()[..12];
        let inbox = Path::new(crate::ingest::NODE_INBOX).join(series);
        let folder = self.claimed_dir.join(token).join(&inbox);
        move_all(files.iter().copied(), &folder)?;
        Ok(files
            .iter()
            .map(|file| {
                let name = file.file_name().unwrap_or_default();
                let dropped = self.drop_dir.join(&inbox).join(name);
                Claimed { candidate: Candidate::dropped(dropped, &self.drop_dir), claimed: folder.join(name) }
            })
            .collect())
    }
}

/// Moves `files` into `destination` (made when needed), durably.
fn move_all<'a>(files: impl Iterator<Item = &'a PathBuf>, destination: &Path) -> std::io::Result<()> {
    let mut files = files.peekable();
    if files.peek().is_none() {
        return Ok(());
    }
    std::fs::create_dir_all(destination)?;
    for file in files {
        move_durably(file, &destination.join(file.file_name().unwrap_or_default()))?;
    }
    sync_dir(destination)
}

/// `rename`, or across file systems a copy under a hidden name, fsync, rename, then removal.
fn move_durably(from: &Path, to: &Path) -> std::io::Result<()> {
    match std::fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(18) => {
            // EXDEV: the drop folder is on another file system than the state folder.
            let name = to.file_name().unwrap_or_default().to_string_lossy();
            let hidden = to.with_file_name(format!(".{name}.copying"));
            std::fs::copy(from, &hidden)?;
            std::fs::File::open(&hidden)?.sync_all()?;
            std::fs::rename(&hidden, to)?;
            if let Some(dir) = to.parent() {
                sync_dir(dir)?;
            }
            std::fs::remove_file(from)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ct(description: &str) -> SeriesHeader {
        SeriesHeader {
            modality: "CT".into(),
            sop_class: "1.2.840.10008.5.1.4.1.1.2".into(),
            description: description.into(),
            rows: 512,
            columns: 512,
            image_type: vec!["ORIGINAL".into(), "PRIMARY".into(), "AXIAL".into()],
        }
    }

    #[test]
    fn globs_match_like_a_shell_ignoring_case() {
        assert!(glob_match("*chest*", "CT CHEST w/o"));
        assert!(glob_match("t?_*", "T1_axial"));
        assert!(!glob_match("*chest", "chest wall"));
        assert!(glob_match("*", ""));
    }

    #[test]
    fn every_rule_that_is_set_must_hold() {
        let open = SelectConfig::default();
        assert!(open.check(&ct("anything")).is_ok());
        let rules = SelectConfig {
            modalities: vec!["ct".into()],
            series_description: vec!["*chest*".into()],
            exclude_series_description: vec!["*scout*".into()],
            min_size: Some([256, 256]),
            ..SelectConfig::default()
        };
        assert!(rules.check(&ct("Chest 1mm")).is_ok());
        assert!(rules.check(&ct("Chest scout")).unwrap_err().contains("exclusion"));
        assert!(rules.check(&ct("Head")).unwrap_err().contains("matches none"));
        let mr = SeriesHeader { modality: "MR".into(), ..ct("Chest") };
        assert!(rules.check(&mr).unwrap_err().contains("modality"));
        let small = SeriesHeader { rows: 128, ..ct("Chest") };
        assert!(rules.check(&small).unwrap_err().contains("min_size"));
    }

    #[test]
    fn a_localizer_is_excluded_by_default_and_image_type_can_be_required() {
        let scout =
            SeriesHeader { image_type: vec!["ORIGINAL".into(), "PRIMARY".into(), "LOCALIZER".into()], ..ct("") };
        let open = SelectConfig::default();
        assert!(open.check(&scout).unwrap_err().contains("excluded (LOCALIZER)"));
        assert!(open.check(&ct("")).is_ok());
        let axial_only = SelectConfig { image_type: vec!["axial".into()], exclude_image_type: vec![], ..open };
        assert!(axial_only.check(&ct("")).is_ok());
        let derived = SeriesHeader { image_type: vec!["DERIVED".into(), "SECONDARY".into()], ..ct("") };
        assert!(axial_only.check(&derived).unwrap_err().contains("has none of"));
        let parsed: SelectConfig = toml::from_str("min_size = [64, 64]").unwrap();
        assert_eq!(parsed.exclude_image_type, ["LOCALIZER"], "the default holds when [select] sets other rules");
    }

    #[test]
    fn a_series_waits_for_the_quiet_time_then_moves() {
        let root = tempfile::tempdir().unwrap();
        let incoming = root.path().join("incoming");
        std::fs::create_dir_all(incoming.join("1.2.3")).unwrap();
        std::fs::write(incoming.join("1.2.3/1.2.3.1.dcm"), b"not read: the header fails").unwrap();
        let mut collector = Collector {
            incoming: incoming.clone(),
            drop_dir: root.path().join("drop"),
            claimed_dir: root.path().join("claimed/w1"),
            ignored: root.path().join("ignored"),
            quiet: Duration::from_secs(3600),
            rules: SelectConfig::default(),
        };
        assert!(collector.collect().is_empty(), "not quiet yet");
        collector.quiet = Duration::ZERO;
        let outcomes = collector.collect();
        assert!(matches!(&outcomes[..], [SeriesOutcome::Ignored { instances: 1, .. }]), "{outcomes:?}");
        assert!(root.path().join("ignored/1.2.3/1.2.3.1.dcm").is_file());
        assert!(!incoming.join("1.2.3").exists());
    }
}
