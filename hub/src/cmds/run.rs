//! `hub run` and `hub demo`.

use std::path::Path;
use std::process::ExitCode;

use common::Shutdown;
use config::Config;
use hub::{Hub, StartOptions};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime")
}

pub fn run(path: &Path) -> ExitCode {
    let mut cfg = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::from(2);
        }
    };
    cfg.apply_env();
    runtime().block_on(async {
        let shutdown = Shutdown::new();
        shutdown.install_signal_handlers();
        let opts =
            StartOptions { shutdown, config_path: Some(path.to_path_buf()), ..Default::default() };
        match Hub::start(cfg, opts).await {
            Ok(hub) => {
                hub.wait().await;
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!(error = %e, "hub failed to start");
                ExitCode::FAILURE
            }
        }
    })
}

#[cfg(feature = "sim")]
pub fn demo(opts: hub::demo::DemoOptions) -> ExitCode {
    runtime().block_on(async {
        let shutdown = Shutdown::new();
        shutdown.install_signal_handlers();
        match hub::demo::run(opts, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "demo failed");
                ExitCode::FAILURE
            }
        }
    })
}
