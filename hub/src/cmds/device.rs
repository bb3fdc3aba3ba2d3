//! `hub device hash-secret`: makes the `secret_hash` of a `[[devices]]` entry.

use std::io::Read;
use std::process::ExitCode;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum DeviceCmd {
    /// Hash a device secret for the configuration file. Reads the secret from standard input;
    /// with --generate, makes a new random one and prints it too.
    HashSecret {
        #[arg(long)]
        generate: bool,
    },
}

pub fn run(cmd: DeviceCmd) -> ExitCode {
    match cmd {
        DeviceCmd::HashSecret { generate } => {
            let secret = if generate {
                let s = hub::registry::new_secret();
                println!("secret = {s}");
                s
            } else {
                let mut s = String::new();
                if let Err(e) = std::io::stdin().read_to_string(&mut s) {
                    eprintln!("cannot read the secret from standard input: {e}");
                    return ExitCode::from(2);
                }
                s.trim_end_matches(['\n', '\r']).to_owned()
            };
            if secret.len() < 12 {
                eprintln!("refusing a secret shorter than 12 characters; use --generate");
                return ExitCode::from(2);
            }
            println!("secret_hash = \"{}\"", hub::registry::hash_secret(&secret));
            ExitCode::SUCCESS
        }
    }
}
