//! CPU time of the CPU stages, process-wide, so `efen bench` can say where the CPU outside
//! inference goes. Each stage measures its own thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), so a
//! stage waiting on a lock or a full queue adds nothing; what the stages do not cover (ingest, the
//! store, the channels, the kernel's work on other threads) is the rest.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The CPU stages, in pipeline order.
#[derive(Debug, Clone, Copy)]
pub enum CpuStage {
    Decode,
    Preprocess,
    Postprocess,
    Evaluate,
    Emit,
}

impl CpuStage {
    pub const ALL: [CpuStage; 5] =
        [CpuStage::Decode, CpuStage::Preprocess, CpuStage::Postprocess, CpuStage::Evaluate, CpuStage::Emit];

    pub fn name(self) -> &'static str {
        match self {
            CpuStage::Decode => "decode",
            CpuStage::Preprocess => "preprocess",
            CpuStage::Postprocess => "postprocess",
            CpuStage::Evaluate => "evaluate",
            CpuStage::Emit => "emit",
        }
    }
}

static NANOS: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];

/// The calling thread's CPU time so far.
fn thread_cpu_nanos() -> u64 {
    // SAFETY: clock_gettime only writes into the struct it is given.
    let mut now: libc::timespec = unsafe { std::mem::zeroed() };
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) } != 0 {
        return 0;
    }
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// A running measurement on the current thread; [`Meter::stop`] adds it to a stage.
pub struct Meter(u64);

impl Meter {
    pub fn start() -> Meter {
        Meter(thread_cpu_nanos())
    }

    /// Adds the CPU time since `start` to `stage` (call it on the same thread).
    pub fn stop(self, stage: CpuStage) {
        NANOS[stage as usize].fetch_add(thread_cpu_nanos().saturating_sub(self.0), Ordering::Relaxed);
    }
}

/// Each stage's CPU time since the process started, in [`CpuStage::ALL`]'s order.
pub fn totals() -> [Duration; 5] {
    std::array::from_fn(|i| Duration::from_nanos(NANOS[i].load(Ordering::Relaxed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage_gets_the_cpu_its_thread_spent() {
        let before = totals()[CpuStage::Evaluate as usize];
        let meter = Meter::start();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        meter.stop(CpuStage::Evaluate);
        let spent = totals()[CpuStage::Evaluate as usize] - before;
        assert!(spent > Duration::from_micros(100), "busy loop measured as {spent:?}");
        // Sleeping costs no CPU.
        let meter = Meter::start();
        std::thread::sleep(Duration::from_millis(50));
        meter.stop(CpuStage::Emit);
        assert!(totals()[CpuStage::Emit as usize] < Duration::from_millis(20));
    }
}
