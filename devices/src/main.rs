//! `devices`: simulated sites and load generators against any hub.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use devices::credentials::CredentialsFile;
use devices::scenario::Scenario;
use devices::site::{self, Pace, SiteOptions};

#[derive(Parser)]
#[command(name = "devices", about = "Simulated sensors, sites and load for the supervision hub")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the demo site's simulated devices against a hub, with credentials from a file
    /// written by `hub demo` (DATA_DIR/demo-credentials.json).
    Site {
        /// The credentials file.
        #[arg(long)]
        credentials: PathBuf,
        /// MQTT address (host:port); defaults to the one in the credentials file.
        #[arg(long)]
        mqtt: Option<String>,
        /// Replay the scripted scenario (5 h of readings) as fast as possible and exit,
        /// instead of catching up and then following the wall clock.
        #[arg(long)]
        fast: bool,
    },
    /// Print the demo scenario (devices, episodes, expected findings) as JSON.
    Scenario,
    /// Serve simulated RTSP cameras: one server, `--mounts` mounts `cam0`, `cam1`, … each
    /// looping the clip without re-encoding (a synthetic pattern without `--clip`). Prints
    /// `port N` and the URLs, then serves until stopped.
    Cameras {
        /// An H.264 MP4 clip.
        #[arg(long)]
        clip: Option<PathBuf>,
        #[arg(long, default_value_t = 1)]
        mounts: usize,
        /// TCP port (0: any free port).
        #[arg(long, default_value_t = 8554)]
        port: u16,
        /// RTSP basic authentication as `user:password`.
        #[arg(long)]
        auth: Option<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HUB_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match Cli::parse().cmd {
        Cmd::Cameras { clip, mounts, port, auth } => {
            use devices::camera::{Clip, SimCamera};
            let clip = match &clip {
                Some(p) => Clip::from_mp4(p)?,
                None => Clip::synthetic(1280, 720, 15, 4)?,
            };
            let names: Vec<String> = (0..mounts.max(1)).map(|i| format!("cam{i}")).collect();
            let list: Vec<(&str, &Clip)> = names.iter().map(|n| (n.as_str(), &clip)).collect();
            let auth = auth.as_deref().map(|a| a.split_once(':').unwrap_or((a, "")));
            let server = SimCamera::serve(port, &list, auth)?;
            println!("port {}", server.port);
            for n in &names {
                println!("{}", server.url_of(n));
            }
            tokio::signal::ctrl_c().await?;
            drop(server);
        }
        Cmd::Site { credentials, mqtt, fast } => {
            let text = std::fs::read_to_string(&credentials)
                .with_context(|| format!("reading {}", credentials.display()))?;
            let creds: CredentialsFile = serde_json::from_str(&text).with_context(|| {
                format!("{} is not a demo credentials file", credentials.display())
            })?;
            let scenario = Scenario::demo();
            let now = common::Clock::now_ms(&common::SystemClock);
            let start = now - scenario.length_ms;
            let opts = SiteOptions {
                mqtt: mqtt.unwrap_or(creds.mqtt.clone()),
                credentials: creds.devices,
                start_ms: start,
                end_ms: fast.then_some(start + scenario.length_ms),
                pace: if fast { Pace::AsFastAsPossible } else { Pace::CatchUpThenRealtime },
            };
            let cancel = tokio_util::sync::CancellationToken::new();
            let c = cancel.clone();
            tokio::spawn(async move {
                let _ = tokio::signal::ctrl_c().await;
                c.cancel();
            });
            let report = site::run(&scenario, opts, cancel).await?;
            println!("published {} readings", report.published);
        }
        Cmd::Scenario => {
            let s = Scenario::demo();
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "scenario": s, "expected": s.expected()
                }))?
            );
        }
    }
    Ok(())
}
