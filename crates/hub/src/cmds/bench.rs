//! `hub bench sensors`: see BENCHMARKS.md.

use std::process::ExitCode;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum BenchCmd {
    /// End-to-end sensor throughput and latency against the broker-only rate.
    Sensors {
        /// Publishing connections (devices).
        #[arg(long, default_value_t = 100)]
        devices: usize,
        /// Messages of the throughput run.
        #[arg(long, default_value_t = 200_000)]
        messages: u64,
        /// Rate of the latency run, messages per second.
        #[arg(long, default_value_t = 10_000.0)]
        rate: f64,
        /// Length of the latency run, seconds.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
    },
}

pub fn run(cmd: BenchCmd) -> ExitCode {
    match cmd {
        BenchCmd::Sensors { .. } => {
            eprintln!("not built yet");
            ExitCode::FAILURE
        }
    }
}
