//! How the process takes memory from the system and gives it back (glibc's allocator on Linux;
//! elsewhere these do nothing).
//!
//! glibc serves a request below its mmap threshold from a heap it shares with the other requests
//! of the same thread, and gives back only the top of that heap: a large block freed between
//! long-lived ones stays resident. By default the threshold rises (up to 32 MiB) each time a
//! mapped block is freed, so the index's key lists and kept rows — tens of MB, growing while
//! short-lived batch buffers come and go — and scoring's large buffers land in those heaps.
//! Measured on the demo log replicated 10 and 100 times, with the threshold moving → fixed at
//! 4 MiB from the start: cached runs (three each, alternated) 139–159 → 142–146 MiB and 185–193 →
//! 167–172 MiB; runs that score (100×, two each) 220–230 → 172–191 MiB, scoring's time the same
//! within this machine's noise (about 1 s more system time in 75 CPU-s: its blocks of 4 MiB and
//! more are mapped afresh). Fixed only after scoring, a run that scores peaked at 194 MiB.

/// Requests of this size and above get their own mapping, returned whole when freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MAP_FROM: libc::c_int = 4 << 20;

/// Fixes glibc's mmap threshold at [`MAP_FROM`] (the command calls it first thing).
pub fn map_large_allocations() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes an allocator parameter; it has no preconditions.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MAP_FROM);
    }
}

/// Hands the memory freed so far back to the system. glibc keeps freed memory in each thread's
/// arena, and a phase's threads (the scoring workers, the oracle) leave tens of MB there that the
/// next phase, allocating from other threads, does not reuse: returned, they no longer count
/// towards the run's peak.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}
