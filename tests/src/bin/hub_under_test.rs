//! `hub run` for the end-to-end suite: a hub in its own process, so that a test can kill it
//! with SIGKILL (`tests/e2e/durability.rs`). Takes the configuration file as its one argument.

use std::process::ExitCode;

use common::Shutdown;
use config::Config;
use hub::{Hub, StartOptions};

fn main() -> ExitCode {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: hub-under-test CONFIG.toml");
        return ExitCode::from(2);
    };
    let cfg = match Config::load(std::path::Path::new(&path)) {
        Ok(c) => c,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn,rumqttd=off"))
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let shutdown = Shutdown::new();
        shutdown.install_signal_handlers();
        match Hub::start(cfg, StartOptions { shutdown, ..Default::default() }).await {
            Ok(hub) => {
                hub.wait().await;
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("hub failed to start: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
