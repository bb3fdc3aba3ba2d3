//! `hub config check FILE` and `hub config print-default`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use config::Config;

#[derive(Subcommand)]
pub enum ConfigCmd {
    /// Validate a configuration file; print every problem with its line and exit non-zero.
    Check { file: PathBuf },
    /// Print the commented default configuration.
    PrintDefault,
}

pub fn run(cmd: ConfigCmd) -> ExitCode {
    match cmd {
        ConfigCmd::Check { file } => match Config::load(&file) {
            Ok(c) => {
                println!(
                    "{}: ok ({} sites, {} devices, {} rules)",
                    file.display(),
                    c.sites.len(),
                    c.devices.len(),
                    c.rules.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprint!("{e}");
                ExitCode::from(2)
            }
        },
        ConfigCmd::PrintDefault => {
            print!("{}", Config::default_toml());
            ExitCode::SUCCESS
        }
    }
}
