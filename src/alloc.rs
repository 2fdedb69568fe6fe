//! Keeps freed tensor memory in the process instead of handing it back to the kernel.
//!
//! libtorch allocates CPU tensors with glibc's `posix_memalign`. By default glibc serves blocks
//! larger than its (adaptive) mmap threshold with a fresh `mmap` and returns them with `munmap`, and
//! trims the heap top above 128 KiB: every training or inference step then re-faults and zero-fills
//! the same hundreds of megabytes. Profiles of a lite training step showed ≈ 15 % of the time in the
//! kernel's page-fault path. Raising the thresholds keeps that memory mapped between steps; the peak
//! (what the step needs at once) does not change. `docs/performance.md` has the before/after.
//!
//! glibc caps the mmap threshold at 32 MiB, and a batch of 8 attention matrices at 32² positions
//! (8 × 1024 × 1024 floats), the RRS head's stacked residuals or the paper networks' wide maps are
//! above it, so those were still mapped and zero-filled afresh at every use. The detector's
//! commands therefore also turn mmap off ([`reuse_large_blocks`]): every block then comes from
//! the heap, which is reused (paper inference at batch 8 −15 %, peak RSS unchanged;
//! docs/performance.md). The SDAS denoiser keeps mmap for its largest blocks: at 256² its heap
//! fragmented (−14 % time but peak RSS +9 %, above the PyTorch reference's).

/// The largest mmap threshold glibc accepts on 64-bit targets (`DEFAULT_MMAP_THRESHOLD_MAX`).
pub const MMAP_THRESHOLD: i32 = 32 << 20;
/// Heap-top bytes glibc may keep before it trims (effectively: never trim between steps).
pub const TRIM_THRESHOLD: i32 = i32::MAX;
/// Extra bytes requested from the kernel whenever the heap grows, so growth happens rarely.
pub const TOP_PAD: i32 = 64 << 20;
/// How many blocks glibc may serve by `mmap` at once under [`reuse_large_blocks`]: none.
pub const MMAP_MAX: i32 = 0;

/// Applies the settings once, early in `main`. A user who tunes glibc with its own
/// `MALLOC_*_` environment variables keeps their values; `REALNET_ALLOCATOR=default` opts out.
/// Returns whether anything was changed.
pub fn keep_freed_memory() -> bool {
    wanted(&env_pairs()) && apply()
}

/// Also serves blocks above the 32 MiB threshold from the heap (the detector's training and
/// inference; see the module's note), under the same opt-outs as [`keep_freed_memory`] and
/// `REALNET_ALLOCATOR=mmap`, which keeps only this part off. Freed blocks stay resident, so long
/// commands call [`release_free_memory`] between phases (a short lite training run on bottle
/// then peaks at 1.56 GB, against 1.60 with mmap and 1.92 before).
pub fn reuse_large_blocks() -> bool {
    let env = env_pairs();
    wanted(&env) && !keeps_mmap(&env) && apply_mmap_max()
}

/// Hands the free pages inside the heap back to the kernel (glibc's `malloc_trim`). With the
/// largest blocks on the heap ([`reuse_large_blocks`]) and trimming off, one phase's freed blocks
/// stay resident and the next phase's blocks of other sizes come on top of them: a short lite
/// training on bottle peaked 100 MiB above glibc's mmap in the patch-memory phase. Called between
/// the phases of a long command; the pages fault in again only where they are reused.
/// Returns whether anything was released.
pub fn release_free_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only returns free heap pages to the kernel, under glibc's arena locks.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Whether `REALNET_ALLOCATOR=mmap` asks to keep glibc's mmap for the largest blocks.
fn keeps_mmap(env: &[(String, String)]) -> bool {
    env.iter()
        .any(|(k, v)| k == "REALNET_ALLOCATOR" && v == "mmap")
}

fn env_pairs() -> Vec<(String, String)> {
    std::env::vars_os()
        .map(|(k, v)| (k.to_string_lossy().into(), v.to_string_lossy().into()))
        .collect()
}

/// Whether to tune, given the environment: not when glibc is already tuned by the user
/// (`MALLOC_*_`, glibc's own spelling) or `REALNET_ALLOCATOR=default` asks for glibc's defaults.
fn wanted(env: &[(String, String)]) -> bool {
    !env.iter().any(|(k, v)| {
        (k.starts_with("MALLOC_") && k.ends_with('_'))
            || (k == "REALNET_ALLOCATOR" && v == "default")
    })
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn apply() -> bool {
    // SAFETY: mallopt only changes glibc's allocator parameters; it is called before any thread
    // that allocates is started, and each call's success is checked.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
            && libc::mallopt(libc::M_TOP_PAD, TOP_PAD) == 1
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn apply_mmap_max() -> bool {
    // SAFETY: mallopt only changes glibc's allocator parameters, under its arena lock, and its
    // success is checked; blocks already mapped stay valid (they are unmapped on free as before).
    unsafe { libc::mallopt(libc::M_MMAP_MAX, MMAP_MAX) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn apply_mmap_max() -> bool {
    false
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn apply() -> bool {
    false
}

#[cfg(test)]
mod tests {
    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// glibc accepts every value (an out-of-range threshold would make mallopt return 0).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn glibc_accepts_the_settings() {
        assert!(super::apply());
        assert!(super::apply_mmap_max());
    }

    /// Resident set of this process in MiB (Linux).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn rss_mib() -> f64 {
        let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
        let pages: f64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
        pages * 4096.0 / (1 << 20) as f64
    }

    /// With mmap off and trimming off, a freed 40 MiB block stays resident until released. (The
    /// test runs on a thread of its own, so glibc serves it from a secondary arena, whose heaps
    /// hold at most 64 MiB and whose top chunk only trimming gives back: a guard block keeps the
    /// freed one off the top.)
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn released_heap_pages_leave_the_resident_set() {
        assert!(super::apply() && super::apply_mmap_max());
        let block = vec![1u8; 40 << 20];
        let guard = vec![1u8; 64 << 10];
        std::hint::black_box((&block, &guard));
        let before = rss_mib();
        drop(block);
        let kept = rss_mib();
        assert!(super::release_free_memory());
        let after = rss_mib();
        drop(guard);
        assert!(
            kept > before - 16.0,
            "freed block was not kept: {before} → {kept} MiB"
        );
        assert!(after < kept - 24.0, "release left {after} of {kept} MiB");
    }

    #[test]
    fn users_settings_win() {
        assert!(super::wanted(&env(&[
            ("PATH", "/bin"),
            ("REALNET_ALLOCATOR", "tuned")
        ])));
        assert!(!super::wanted(&env(&[("REALNET_ALLOCATOR", "default")])));
        assert!(!super::wanted(&env(&[(
            "MALLOC_TRIM_THRESHOLD_",
            "131072"
        )])));
        // jemalloc's variable, not one of the glibc thresholds realnet would override.
        assert!(super::wanted(&env(&[("MALLOC_CONF", "x")])));
        // `mmap` keeps the thresholds but not the heap-only large blocks.
        let mmap = env(&[("REALNET_ALLOCATOR", "mmap")]);
        assert!(super::wanted(&mmap) && super::keeps_mmap(&mmap));
        assert!(!super::keeps_mmap(&env(&[("REALNET_ALLOCATOR", "tuned")])));
    }
}
