//! Test harness: runs the real `efen` binary in a temporary drop folder against a real store
//! (a SQLite file, or a fresh PostgreSQL database), and reads the store back with sqlx.
#![allow(dead_code, unused_macros)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod fixtures;
pub mod http;
pub mod proxy;

use sqlx::AnyPool;
use sqlx::any::{AnyPoolOptions, install_default_drivers};

/// Runs a test body `async fn name(backend: Backend)` once on SQLite and once on PostgreSQL, as two
/// tests `name::sqlite` and `name::postgres` (the test file declares `#[macro_use] mod common;`).
macro_rules! on_both_backends {
    ($($body:ident),+ $(,)?) => {$(
        mod $body {
            #[tokio::test]
            async fn sqlite() {
                super::$body(crate::common::Backend::Sqlite).await
            }
            #[tokio::test]
            async fn postgres() {
                super::$body(crate::common::Backend::Postgres).await
            }
        }
    )+};
}

/// A child process that is killed (and reaped) when it goes out of scope, so a failing test leaves
/// nothing running: efen, storescp, storescu, Orthanc.
pub struct KillOnDrop(pub std::process::Child);

impl std::ops::Deref for KillOnDrop {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl KillOnDrop {
    /// `Child::wait_with_output`, which needs the child by value: both pipes are drained at once
    /// (stderr on a thread), so neither can fill up and stall the child.
    pub fn wait_with_output(mut self) -> std::io::Result<Output> {
        use std::io::Read;
        let stderr = self.0.stderr.take().map(|mut pipe| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                pipe.read_to_end(&mut bytes).map(|_| bytes)
            })
        });
        let mut stdout = Vec::new();
        if let Some(mut pipe) = self.0.stdout.take() {
            pipe.read_to_end(&mut stdout)?;
        }
        let stderr = match stderr {
            Some(reader) => reader.join().expect("stderr reader")?,
            None => Vec::new(),
        };
        let status = self.0.wait()?;
        Ok(Output { status, stdout, stderr })
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// `Command::spawn`, guarded.
pub trait SpawnGuarded {
    fn spawn_guarded(&mut self) -> std::io::Result<KillOnDrop>;
}

impl SpawnGuarded for Command {
    fn spawn_guarded(&mut self) -> std::io::Result<KillOnDrop> {
        self.spawn().map(KillOnDrop)
    }
}

/// The repository root (where config/, models/ and samples/ are).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Python of the project's venv (scripts/python-env.sh), for peers written in Python: pydicom,
/// pandas, pyarrow, highdicom.
/// Runs tests/series_check.py (dciodvfy, highdicom, nibabel, dcmqi, numpy) on a SEG against its
/// source series, with `extra` options; returns its report, or fails the test with its reasons.
pub fn series_check(seg: &Path, source: &Path, extra: &[&str]) -> serde_json::Value {
    peer_check("tests/series_check.py", &[seg, source], extra)
}

/// Runs tests/sr_check.py (dciodvfy -new, highdicom, dcmqi's tid1500reader) on a measurement
/// report against its SEG and result.json, with `extra` options; returns its report, or fails the
/// test with its reasons.
#[allow(dead_code)]
pub fn sr_check(sr: &Path, seg: &Path, result: &Path, extra: &[&str]) -> serde_json::Value {
    peer_check("tests/sr_check.py", &[sr, seg, result], extra)
}

/// Runs one of the Python peer checks in the venv on `files`, then `extra`: its JSON report on
/// stdout, or the test fails with what it said.
fn peer_check(script: &str, files: &[&Path], extra: &[&str]) -> serde_json::Value {
    let output =
        std::process::Command::new(venv_python()).arg(repo().join(script)).args(files).args(extra).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{script} {}:\n{stdout}\n{}",
        files[0].display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&stdout).unwrap()
}

pub fn venv_python() -> PathBuf {
    let venv = std::env::var_os("EFEN_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/efen/venv"));
    venv.join("bin/python")
}

/// Admin URL for creating test databases; `.ci/run` starts a server when none answers.
pub fn postgres_admin_url() -> String {
    std::env::var("EFEN_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// One test's world: a temp folder with drop/, state/, out/ and its own store.
pub struct World {
    pub dir: tempfile::TempDir,
    pub database_url: String,
    pub backend: Backend,
    postgres_db: Option<String>,
}

impl World {
    pub async fn new(backend: Backend) -> World {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("drop")).unwrap();
        let (database_url, postgres_db) = match backend {
            // A plain URL: efen creates the file (and its folder) itself.
            Backend::Sqlite => (format!("sqlite://{}", dir.path().join("state/efen.db").display()), None),
            Backend::Postgres => {
                let name = format!("efen_test_{}", uuid::Uuid::new_v4().simple());
                let admin = connect(&postgres_admin_url()).await;
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&admin)
                    .await
                    .expect("creating a test database");
                admin.close().await;
                let base = postgres_admin_url();
                let url = format!("{}/{name}", &base[..base.rfind('/').unwrap()]);
                (url, Some(name))
            }
        };
        World { dir, database_url, backend, postgres_db }
    }

    /// Writes a pipeline file `<name>.toml` for the bundled model with `body` (TOML sections).
    pub fn pipeline(&self, name: &str, body: &str) -> PathBuf {
        let model = repo().join("models/efen-small.onnx");
        let path = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, format!("name = \"{name}\"\nmodel = \"{}\"\n{body}\n", model.display())).unwrap();
        path
    }

    pub fn drop_dir(&self) -> PathBuf {
        self.dir.path().join("drop")
    }
    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }
    pub fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    /// The real binary, configured for this world.
    pub fn efen(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_efen"));
        command
            .current_dir(self.dir.path())
            .env("EFEN_CONFIG", repo().join("config/default.toml"))
            .env("EFEN_PATHS__STATE_DIR", self.state())
            .env("EFEN_PATHS__OUT_DIR", self.out())
            .env("EFEN_WATCH__SETTLE_MS", "300")
            .env("EFEN_WATCH__RESCAN_MS", "500")
            .env("EFEN_WATCH__WORKER", "w1")
            .env("DATABASE_URL", &self.database_url)
            .env("EFEN_LOG", "info,ort=warn")
            .env_remove("ORT_DYLIB_PATH");
        command
    }

    /// `efen watch` on the world's drop folder with `env` on top, its stderr in the log `log`.
    pub fn watch(&self, env: &[(&str, &str)], log: &str) -> KillOnDrop {
        self.efen()
            .envs(env.iter().copied())
            .args(["watch", self.drop_dir().to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(self.log(log))
            .spawn_guarded()
            .unwrap()
    }

    /// Runs `efen <args>` and returns its output; prints everything a failing test needs.
    pub fn run(&self, args: &[&str]) -> Output {
        let output = self.efen().args(args).output().expect("running efen");
        eprintln!(
            "$ efen {}\nexit: {:?}\nstdout:\n{}\nstderr:\n{}",
            args.join(" "),
            output.status.code(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Where a spawned efen's stderr goes, so a failing test can show it.
    pub fn log(&self, name: &str) -> std::fs::File {
        std::fs::File::create(self.dir.path().join(format!("{name}.log"))).unwrap()
    }

    /// The logs of the efen processes this test spawned.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for name in names(self.dir.path()).into_iter().filter(|n| n.ends_with(".log")) {
            let text = std::fs::read_to_string(self.dir.path().join(&name)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            out += &format!("--- {name} (last {} lines)\n", tail.len());
            for line in tail.into_iter().rev() {
                out += line;
                out.push('\n');
            }
        }
        out
    }

    /// Like [`wait_for`], but shows the efen logs when it times out.
    pub async fn wait_for(&self, what: &str, timeout: std::time::Duration, mut check: impl AsyncFnMut() -> bool) {
        self.wait_for_state(what, timeout, async || if check().await { Ok(()) } else { Err(String::new()) }).await
    }

    /// Waits until `check` returns Ok; on a timeout, shows the last state it described (Err) and
    /// the efen logs, so a failure says which condition was still unmet.
    pub async fn wait_for_state(
        &self,
        what: &str,
        timeout: std::time::Duration,
        mut check: impl AsyncFnMut() -> Result<(), String>,
    ) {
        let deadline = std::time::Instant::now() + timeout;
        while let Err(state) = check().await {
            if std::time::Instant::now() >= deadline {
                let state = if state.is_empty() { state } else { format!("; last seen: {state}") };
                panic!("timed out waiting for {what}{state}\n{}", self.logs());
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    pub async fn pool(&self) -> AnyPool {
        connect(&self.database_url).await
    }

    /// Copies samples (and their masks) into the drop folder.
    pub fn drop_samples(&self, stems: &[&str]) {
        let samples = repo().join("samples/synthetic");
        for entry in std::fs::read_dir(&samples).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if stems.iter().any(|s| name.starts_with(&format!("{s}.")) || name.starts_with(&format!("{s}_mask."))) {
                std::fs::copy(&path, self.drop_dir().join(&name)).unwrap();
            }
        }
    }

    /// Removes the world's PostgreSQL database now (dropping the world does it too).
    pub async fn close(mut self) {
        if let Some(name) = self.postgres_db.take() {
            drop_database(&name).await;
        }
    }
}

impl Drop for World {
    /// A test that fails (panics) still removes its PostgreSQL database. Drop cannot wait on the
    /// test's own runtime, so the removal runs on a thread with a runtime of its own.
    fn drop(&mut self) {
        if let Some(name) = self.postgres_db.take() {
            let removal = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                runtime.block_on(drop_database(&name));
            });
            let _ = removal.join();
        }
    }
}

async fn drop_database(name: &str) {
    install_default_drivers();
    let Ok(admin) = AnyPoolOptions::new().max_connections(1).connect(&postgres_admin_url()).await else {
        return;
    };
    let _ =
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))).execute(&admin).await;
    admin.close().await;
}

pub async fn connect(url: &str) -> AnyPool {
    install_default_drivers();
    AnyPoolOptions::new()
        .max_connections(2)
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"))
}

pub async fn count(pool: &AnyPool, sql: &'static str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(sql).fetch_one(pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    n
}

/// Like [`count`], but None while the query cannot run yet (the store not migrated).
pub async fn try_count(pool: &AnyPool, sql: &'static str) -> Option<i64> {
    sqlx::query_as::<_, (i64,)>(sql).fetch_one(pool).await.ok().map(|(n,)| n)
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Files (not folders, not the worker locks) left anywhere under `<state>/claimed/`.
pub fn claimed_files(state: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.file_name().is_some_and(|n| n != ".lock") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&state.join("claimed"), &mut out);
    out
}

/// Lists a folder's file names, sorted.
pub fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// A small PNG whose bytes differ for every `i`: a bright blob on a noisy background.
pub fn unique_png(i: u32) -> Vec<u8> {
    let (cx, cy) = (16 + (i * 7) % 32, 16 + (i * 13) % 32);
    let image = image::RgbImage::from_fn(64, 64, |x, y| {
        let noise = ((x * 31 + y * 17 + i * 101) % 23) as u8;
        let d2 = (x as i64 - cx as i64).pow(2) + (y as i64 - cy as i64).pow(2);
        if d2 < 100 { image::Rgb([200, 60 + noise, 60]) } else { image::Rgb([90 + noise, 70, 60 + noise]) }
    });
    let mut bytes = std::io::Cursor::new(Vec::new());
    image.write_to(&mut bytes, image::ImageFormat::Png).unwrap();
    bytes.into_inner()
}

/// Waits (polling) until `check` holds, failing the test after `timeout`.
pub async fn wait_for(what: &str, timeout: std::time::Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Sends a signal to a child process.
pub fn signal(child: &std::process::Child, name: &str) {
    let status =
        std::process::Command::new("kill").args([&format!("-{name}"), &child.id().to_string()]).status().unwrap();
    assert!(status.success());
}

/// Waits for a child to exit, failing the test after `timeout`.
pub async fn wait_exit(child: &mut std::process::Child, timeout: std::time::Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(std::time::Instant::now() < deadline, "efen did not exit in {timeout:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
