//! `efen watch`: claims settled files, records them, and drains on SIGTERM.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{Backend, SpawnGuarded, World, count, names, wait_for};

fn sigterm(child: &std::process::Child) {
    common::signal(child, "TERM");
}

/// Issue 2: SIGTERM while cases are in flight: those finish and are recorded, nothing claimed is
/// left behind, the exit code is 0.
#[tokio::test]
async fn sigterm_drains_the_cases_in_flight_and_exits_0() {
    let world = World::new(Backend::Postgres).await;
    let mut child = world
        .efen()
        .args(["watch", world.drop_dir().to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn_guarded()
        .unwrap();

    // Wait until the service is up (its run is in the store), then drop files.
    let pool = common::connect(&world.database_url).await;
    wait_for("the watcher to start", Duration::from_secs(60), async || {
        sqlx::query_as::<_, (i64,)>("SELECT COUNT(*) FROM runs")
            .fetch_one(&pool)
            .await
            .map(|(n,)| n == 1)
            .unwrap_or(false)
    })
    .await;
    world.drop_samples(&["case01", "case02", "case03", "case04", "case05", "case12"]);
    wait_for("a first claim", Duration::from_secs(30), async || {
        !common::claimed_files(&world.state()).is_empty() || !names(&world.state().join("done")).is_empty()
    })
    .await;
    sigterm(&child);

    let status = common::wait_exit(&mut child, Duration::from_secs(60)).await;
    let output = child.wait_with_output().unwrap();
    eprintln!("stderr:\n{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(status.code(), Some(0));

    assert!(common::claimed_files(&world.state()).is_empty(), "orphans: {:?}", common::claimed_files(&world.state()));
    let done = names(&world.state().join("done"));
    let recorded = count(&pool, "SELECT COUNT(*) FROM case_results WHERE status = 'succeeded'").await;
    assert!(recorded >= 1, "the case in flight was recorded");
    assert_eq!(done.len() as i64, recorded, "every recorded case's input is in done/: {done:?}");
    // What was not claimed is still in the drop folder for the next start; nothing is lost.
    let left: Vec<String> = names(&world.drop_dir()).into_iter().filter(|n| !n.contains("_mask")).collect();
    assert_eq!(left.len() + done.len(), 6, "left {left:?}, done {done:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("stopped:"));
    pool.close().await;
    world.close().await;
}

/// A file written slowly is not read before it is complete.
#[tokio::test]
async fn a_file_still_being_written_is_not_taken_early() {
    let world = World::new(Backend::Sqlite).await;
    let mut child = world
        .efen()
        .args(["watch", world.drop_dir().to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn_guarded()
        .unwrap();
    let bytes = std::fs::read(common::repo().join("samples/synthetic/case02.png")).unwrap();
    std::fs::copy(common::repo().join("samples/synthetic/case02_mask.png"), world.drop_dir().join("slow_mask.png"))
        .unwrap();
    {
        use std::io::Write;
        let mut file = std::fs::File::create(world.drop_dir().join("slow.png")).unwrap();
        // 1 KiB every 100 ms for the first 16 KiB: several settle intervals' worth of writing.
        for chunk in bytes[..16 * 1024].chunks(1024) {
            file.write_all(chunk).unwrap();
            file.flush().unwrap();
            std::thread::sleep(Duration::from_millis(100));
        }
        file.write_all(&bytes[16 * 1024..]).unwrap();
    }
    let state = world.state();
    wait_for("the slow file to be processed", Duration::from_secs(60), async || {
        !names(&state.join("done")).is_empty() || !names(&state.join("failed")).is_empty()
    })
    .await;
    sigterm(&child);
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert_eq!(names(&state.join("done")), ["slow.png"], "failed: {:?}", names(&state.join("failed")));
    let pool = world.pool().await;
    assert_eq!(
        count(&pool, "SELECT COUNT(*) FROM case_results WHERE status = 'succeeded' AND has_ground_truth").await,
        1
    );
    pool.close().await;
    world.close().await;
}
