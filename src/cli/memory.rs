//! How the `taskyard serve` process asks the C allocator to hold memory.
//! Owns one process-wide allocator setting, made before any thread starts;
//! touches nothing in the engine or the server.

/// glibc gives each thread that meets a locked arena a new one, up to
/// eight per core. A server runs a writer, workers, a read pool and one
/// thread per connection, so a 100,000-run group spread its garbage over
/// a dozen arenas: peak RSS 76 MiB against 34 MiB with two arenas
/// (`cargo bench --bench footprint`, issue 18), at the same rate (17.2k to
/// 18.0k runs/s either way): the serial path is the one writer thread, not
/// contention in malloc. `MALLOC_ARENA_MAX` in
/// the environment still wins, for whoever wants to tune it.
pub fn cap_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; it is called
        // before `serve` starts any thread.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}
