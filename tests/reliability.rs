//! Issue 5: exactly once, crash-safe, outage-proof, several workers on one folder. Real `efen
//! watch` processes against a real PostgreSQL; each scenario prints its counts.

mod common;

use std::io::Write;
use std::time::Duration;

use common::proxy::Proxy;
use common::{Backend, KillOnDrop, World, claimed_files, count, names, unique_png, wait_exit};
use sqlx::AnyPool;

fn start_watch(world: &World, worker: &str, env: &[(&str, &str)]) -> KillOnDrop {
    let mut all = vec![("EFEN_WATCH__WORKER", worker)];
    all.extend_from_slice(env);
    world.watch(&all, worker)
}

/// Waits until `n` watchers have started their runs.
async fn wait_started(world: &World, pool: &AnyPool, n: i64) {
    world
        .wait_for("the watchers to start", Duration::from_secs(60), async || {
            common::try_count(pool, "SELECT COUNT(*) FROM runs").await == Some(n)
        })
        .await;
}

async fn results(pool: &AnyPool) -> i64 {
    count(pool, "SELECT COUNT(*) FROM results").await
}

/// Image files left in the drop folder (ground truth stays there by design).
fn left_in_drop(world: &World) -> usize {
    names(&world.drop_dir()).len()
}

async fn stop(mut child: KillOnDrop) {
    common::signal(&child, "TERM");
    assert_eq!(wait_exit(&mut child, Duration::from_secs(60)).await.code(), Some(0));
}

#[tokio::test]
async fn five_hundred_drops_with_slow_writes_duplicates_and_corrupt_files() {
    let world = World::new(Backend::Postgres).await;
    let pool = world.pool().await;
    // A settle time five times the writer's pause, so a slow machine cannot fake completeness.
    let child = start_watch(&world, "w1", &[("EFEN_WATCH__SETTLE_MS", "1000")]);
    wait_started(&world, &pool, 1).await;

    let drop = world.drop_dir();
    // 450 distinct images (10 of them written slowly), 30 copies under other names, 20 corrupt.
    // Slow writers: 1 KiB every 200 ms, ten files at once.
    let writers: Vec<_> = (0..10u32)
        .map(|i| {
            let drop = drop.clone();
            std::thread::spawn(move || {
                let bytes = unique_png(i);
                let mut file = std::fs::File::create(drop.join(format!("slow-{i:03}.png"))).unwrap();
                for chunk in bytes.chunks(1024) {
                    file.write_all(chunk).unwrap();
                    file.flush().unwrap();
                    std::thread::sleep(Duration::from_millis(200));
                }
            })
        })
        .collect();
    for i in 10..450 {
        std::fs::write(drop.join(format!("img-{i:03}.png")), unique_png(i)).unwrap();
    }
    for i in 0..30 {
        std::fs::write(drop.join(format!("copy-of-{i:03}.png")), unique_png(100 + i)).unwrap();
    }
    for i in 0..20u8 {
        std::fs::write(drop.join(format!("corrupt-{i:02}.png")), [0x89, b'P', b'N', b'G', i, i, i]).unwrap();
    }
    for writer in writers {
        writer.join().unwrap();
    }

    world
        .wait_for("every drop to be handled", Duration::from_secs(120), async || {
            left_in_drop(&world) == 0
                && claimed_files(&world.state()).is_empty()
                && results(&pool).await == 470
                && count(&pool, "SELECT COUNT(*) FROM duplicates").await == 30
        })
        .await;
    stop(child).await;

    let succeeded = count(&pool, "SELECT COUNT(*) FROM results WHERE status = 'succeeded'").await;
    let failed = count(&pool, "SELECT COUNT(*) FROM results WHERE status = 'failed'").await;
    let duplicates = count(&pool, "SELECT COUNT(*) FROM duplicates").await;
    let done = names(&world.state().join("done")).len();
    let failed_files = names(&world.state().join("failed")).iter().filter(|n| !n.ends_with(".reason.txt")).count();
    eprintln!(
        "500 dropped: {succeeded} succeeded, {failed} failed, {duplicates} duplicates, {} lost",
        500 - succeeded - failed - duplicates
    );
    assert_eq!((succeeded, failed, duplicates), (450, 20, 30));
    assert_eq!(
        count(&pool, "SELECT COUNT(*) FROM results WHERE status = 'failed' AND error_stage = 'decode'").await,
        20
    );
    assert_eq!((done, failed_files), (480, 20), "every input ends in done/ or failed/");
    // The slow files were never read early: all ten decoded.
    assert_eq!(
        count(&pool, "SELECT COUNT(*) FROM case_results WHERE source_path LIKE '%slow-%' AND status = 'succeeded'")
            .await,
        10
    );
    pool.close().await;
    world.close().await;
}

#[tokio::test]
async fn kill_9_at_random_moments_ends_like_an_uninterrupted_run() {
    let world = World::new(Backend::Postgres).await;
    for i in 0..200 {
        std::fs::write(world.drop_dir().join(format!("img-{i:03}.png")), unique_png(1000 + i)).unwrap();
    }
    let pool = world.pool().await;
    let mut seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    eprintln!("kill -9 seed {seed}");
    for round in 0..3 {
        let mut child = start_watch(&world, "w1", &[]);
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let after = Duration::from_millis(600 + (seed >> 33) % 1500);
        tokio::time::sleep(after).await;
        common::signal(&child, "KILL");
        wait_exit(&mut child, Duration::from_secs(10)).await;
        eprintln!(
            "round {round}: killed after {after:?} with {} recorded, {} claimed",
            results(&pool).await,
            claimed_files(&world.state()).len()
        );
    }
    let child = start_watch(&world, "w1", &[]);
    // Everything may already be done: still let this start finish before stopping it.
    let log = world.dir.path().join("w1.log");
    world
        .wait_for("the last start", Duration::from_secs(60), async || {
            std::fs::read_to_string(&log).is_ok_and(|text| text.contains("watching;"))
        })
        .await;
    world
        .wait_for("all 200 recorded", Duration::from_secs(120), async || {
            results(&pool).await == 200 && claimed_files(&world.state()).is_empty() && left_in_drop(&world) == 0
        })
        .await;
    stop(child).await;

    let succeeded = count(&pool, "SELECT COUNT(*) FROM results WHERE status = 'succeeded'").await;
    let duplicates = count(&pool, "SELECT COUNT(*) FROM duplicates").await;
    eprintln!("200 dropped, 3 kills: {succeeded} succeeded, {duplicates} duplicates, {} lost", 200 - succeeded);
    assert_eq!(succeeded, 200);
    assert_eq!(duplicates, 0, "a redo is not a duplicate");
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM cases").await, 200);
    assert_eq!(names(&world.state().join("done")).len(), 200);
    // One output folder per case, each with exactly its three files (no temporaries left over).
    let outputs = names(&world.out());
    assert_eq!(outputs.len(), 200);
    for case in outputs {
        assert_eq!(names(&world.out().join(&case)), ["mask.png", "overlay.png", "result.json"], "case {case}");
    }
    pool.close().await;
    world.close().await;
}

#[tokio::test]
async fn postgres_outage_mid_run_loses_nothing() {
    let world = World::new(Backend::Postgres).await;
    let proxy = Proxy::start("127.0.0.1:5432").await;
    let via_proxy = world.database_url.replace("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port));
    let pool = world.pool().await;
    let child = start_watch(&world, "w1", &[("DATABASE_URL", &via_proxy)]);
    wait_started(&world, &pool, 1).await;

    for i in 0..40 {
        std::fs::write(world.drop_dir().join(format!("before-{i:02}.png")), unique_png(2000 + i)).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    proxy.set(false);
    // Writes that were already committed when the link was cut show up at once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during_outage = results(&pool).await;
    for i in 0..40 {
        std::fs::write(world.drop_dir().join(format!("during-{i:02}.png")), unique_png(3000 + i)).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let after_outage = results(&pool).await;
    assert_eq!(after_outage, during_outage, "nothing can be written while the database is away");
    proxy.set(true);

    world
        .wait_for_state("all 80 recorded", Duration::from_secs(90), async || {
            let (recorded, claimed, left) = (results(&pool).await, claimed_files(&world.state()), left_in_drop(&world));
            if recorded == 80 && claimed.is_empty() && left == 0 {
                return Ok(());
            }
            Err(format!("{recorded} results, {left} files in the drop folder, claimed: {claimed:?}"))
        })
        .await;
    stop(child).await;
    let succeeded = count(&pool, "SELECT COUNT(*) FROM results WHERE status = 'succeeded'").await;
    eprintln!(
        "80 dropped, 4 s outage with {during_outage} recorded before it: {succeeded} succeeded, {} lost",
        80 - succeeded
    );
    assert_eq!(succeeded, 80);
    assert_eq!(names(&world.state().join("done")).len(), 80);
    pool.close().await;
    world.close().await;
}

#[tokio::test]
async fn two_workers_split_one_folder_without_doing_a_file_twice() {
    let world = World::new(Backend::Postgres).await;
    let pool = world.pool().await;
    let (a, b) = (start_watch(&world, "w1", &[]), start_watch(&world, "w2", &[]));
    wait_started(&world, &pool, 2).await;
    for i in 0..200 {
        std::fs::write(world.drop_dir().join(format!("img-{i:03}.png")), unique_png(4000 + i)).unwrap();
    }
    world
        .wait_for("all 200 recorded", Duration::from_secs(120), async || {
            results(&pool).await == 200 && claimed_files(&world.state()).is_empty() && left_in_drop(&world) == 0
        })
        .await;
    stop(a).await;
    stop(b).await;

    let per_worker: Vec<(String, i64)> =
        sqlx::query_as("SELECT COALESCE(c.worker, ''), COUNT(*) FROM results r JOIN cases c ON c.case_id = r.case_id GROUP BY c.worker ORDER BY 1")
            .fetch_all(&pool)
            .await
            .unwrap();
    eprintln!("200 dropped, two workers: {per_worker:?}");
    assert_eq!(per_worker.iter().map(|(_, n)| n).sum::<i64>(), 200);
    assert_eq!(
        count(&pool, "SELECT COUNT(*) FROM audit_log WHERE action = 'case_succeeded'").await,
        200,
        "no file processed twice"
    );
    assert_eq!(count(&pool, "SELECT COUNT(*) FROM duplicates").await, 0);
    assert_eq!(names(&world.state().join("done")).len(), 200);
    pool.close().await;
    world.close().await;
}
