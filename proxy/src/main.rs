//! The `toolgate` binary: see [`toolgate::cli`].

/// mimalloc instead of glibc's malloc: a proxy allocates and frees many small, short-lived buffers per message
/// on every worker thread; with glibc that was about 15 % of toolgate's CPU at 1 000 calls/s (`_int_malloc`,
/// `malloc_consolidate`, `unlink_chunk`), and its per-thread arenas kept freed memory resident. BENCHMARKS.md
/// has the before and after.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    toolgate::cli::main()
}
