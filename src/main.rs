//! `flotilla`: one binary for every service and the operations commands.
//!
//! `flotilla` (or `flotilla all`) runs everything in one process on SQLite; `flotilla accounts`
//! runs one service; `flotilla migrate` and `flotilla admin …` are operations commands.
//! Configuration comes from `FLOTILLA_*` variables; the flags below override them.

mod cli;
mod embedded;
mod openapi;
mod services;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
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
