//! Keeping the resident size near what is live.
//!
//! A sync of 10,000 users holds its request (about 1.3 MB of JSON), the parsed users and a
//! 10,000-item answer at once: tens of megabytes across several threads. glibc's allocator
//! gives each thread that meets contention an arena of its own (up to 8 per core) and keeps
//! what a request freed in it for reuse, so the resident size after a few large syncs stayed
//! at 3–4× the idle size although nothing was live (`docs/PERFORMANCE.md`). Two measures,
//! measured together (2.0–3.4× → 1.5×; each alone did not reach 2×):
//! - [`tune_allocator`] at start: at most two arenas per core, and a fixed threshold above
//!   which blocks are mapped on their own (and unmapped when freed) instead of glibc's
//!   sliding one, which rises after the first large free until megabyte bodies stay in the
//!   heap;
//! - [`release_free_memory_soon`] once a large answer is built: the free pages of every
//!   arena go back, on the blocking pool, off the answer's path, one trim at a time; never
//!   for small requests.

/// Arenas per core (glibc's default is 8): the server's own threads are few (HTTP workers,
/// engine workers, a blocking pool that is idle most of the time).
const ARENAS_PER_CORE: usize = 2;

/// Blocks of this size or more are mapped on their own and unmapped when freed.
const MMAP_THRESHOLD: usize = 256 * 1024;

/// Sets the allocator's arena count and mapping threshold (see the module's doc), unless the
/// operator set them through glibc's environment variables (`MALLOC_ARENA_MAX`,
/// `MALLOC_MMAP_THRESHOLD_`), which win. Call it first thing, before threads start.
pub(crate) fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let set = |variable: &str, parameter: libc::c_int, value: usize| {
            if std::env::var_os(variable).is_none() {
                let value = libc::c_int::try_from(value).unwrap_or(libc::c_int::MAX);
                // SAFETY: mallopt takes plain integers and is safe to call at any time; a
                // value glibc refuses leaves its default in place (it returns 0).
                unsafe {
                    libc::mallopt(parameter, value);
                }
            }
        };
        set(
            "MALLOC_ARENA_MAX",
            libc::M_ARENA_MAX,
            ARENAS_PER_CORE * cores,
        );
        set(
            "MALLOC_MMAP_THRESHOLD_",
            libc::M_MMAP_THRESHOLD,
            MMAP_THRESHOLD,
        );
    }
}

/// [`release_free_memory`] on the blocking pool, not awaited, and never two at once (a trim
/// walks every arena under its lock): what a large answer calls after it is built, so the trim
/// is never part of its latency or its deadline.
pub(crate) fn release_free_memory_soon() {
    use std::sync::atomic::{AtomicBool, Ordering};
    static TRIMMING: AtomicBool = AtomicBool::new(false);
    if TRIMMING.swap(true, Ordering::AcqRel) {
        return;
    }
    tokio::task::spawn_blocking(|| {
        release_free_memory();
        TRIMMING.store(false, Ordering::Release);
    });
}

/// Returns the allocator's free memory to the system (glibc's `malloc_trim`, which trims
/// every arena, not only the top of the main heap); nothing on other platforms, whose
/// allocators decide this themselves.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointer and may be called at any time from any thread;
    // it only walks the allocator's own free lists under the allocator's locks.
    unsafe {
        libc::malloc_trim(0);
    }
}
