//! `flotilla`: one binary for every service and the operations commands.
//!
//! `flotilla` (or `flotilla all`) runs everything in one process on SQLite; `flotilla accounts`
//! runs one service; `flotilla migrate` and `flotilla admin …` are operations commands, and
//! `flotilla probe` is the health check of an image without a shell.
//! Configuration comes from `FLOTILLA_*` variables; the flags below override them.

mod cli;
mod embedded;
mod openapi;
mod probe;
mod services;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    tune_allocator();
    let cli = cli::Cli::parse();
    let env = cli.env();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("flotilla: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli, env)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, naming what is wrong (configuration errors name the variable).
            eprintln!("flotilla: {e:#}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// glibc raises its mmap threshold after large blocks are freed, so the 19 MiB buffers of
/// password hashing end up kept in per-thread arenas and the process stays hundreds of MiB
/// large after a burst of logins. A fixed threshold returns such blocks to the system at once;
/// two arenas keep fragmentation down on a 2-core container.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
