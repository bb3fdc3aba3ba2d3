//! `hub`: the supervision hub binary. Parses flags, loads configuration, runs a subcommand.

mod cmds;

use std::process::ExitCode;

fn main() -> ExitCode {
    cmds::main()
}
