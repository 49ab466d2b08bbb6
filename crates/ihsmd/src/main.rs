//! `ihsmd`: the HSM device of a host (see the library, `ihsmd::run`).
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = ihsmd::Args::parse();
    match ihsmd::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("ihsmd: {msg}");
            ExitCode::FAILURE
        }
    }
}
