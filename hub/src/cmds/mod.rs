//! One module per subcommand.

mod accounts;
#[cfg(feature = "sim")]
mod bench;
#[cfg(feature = "sim")]
mod bench_cameras;
#[cfg(feature = "sim")]
mod bench_deliveries;
#[cfg(feature = "sim")]
mod bench_viewers;
mod config_cmd;
mod device;
mod models;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "hub", version, about = "Video and IoT non-site supervision hub")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the hub with a configuration file.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run broker, hub and a simulated site in one process.
    #[cfg(feature = "sim")]
    Demo {
        /// HTTP API address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        http: String,
        /// MQTT address devices connect to.
        #[arg(long, default_value = "127.0.0.1:11883")]
        mqtt: String,
        /// Where the demo keeps its database, findings and credentials.
        #[arg(long, default_value = ".demo")]
        data_dir: PathBuf,
        /// Model search path, repeatable (the project's models/ and a mirror of the published
        /// models such as ../shared/data/models).
        #[arg(long = "models", default_value = "models")]
        models: Vec<PathBuf>,
        /// Folder of the sample clips the simulated cameras serve (synthetic video if absent).
        #[arg(long)]
        clips: Option<PathBuf>,
    },
    /// Configuration files.
    #[command(subcommand)]
    Config(config_cmd::ConfigCmd),
    /// Device credentials.
    #[command(subcommand)]
    Device(device::DeviceCmd),
    /// Users (people who log in).
    #[command(subcommand)]
    User(accounts::UserCmd),
    /// Departments (region and industries: what their users and tokens see).
    #[command(subcommand)]
    Department(accounts::DepartmentCmd),
    /// API tokens for systems.
    #[command(subcommand)]
    Token(accounts::TokenCmd),
    /// The supervision item catalogue (docs/records.md).
    #[command(subcommand)]
    Catalogue(accounts::ImportCmd),
    /// Regulated entities (docs/records.md).
    #[command(subcommand)]
    Entity(accounts::ImportCmd),
    /// The model library's files.
    #[command(subcommand)]
    Models(models::ModelsCmd),
    /// Benchmarks (not tests): print figures and ratios against a baseline run alongside.
    #[cfg(feature = "sim")]
    #[command(subcommand)]
    Bench(bench::BenchCmd),
}

/// The log filter unless `HUB_LOG` says otherwise. rumqttd's router opens an ERROR-level span
/// for every message it routes (formatting the topic each time), so its routing module is off
/// by default; the gateway logs what operators need about connections.
pub const DEFAULT_LOG_FILTER: &str = "info,rumqttd=warn,rumqttd::router::routing=off,sqlx=warn";

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env(config::env::LOG)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
    tracing_subscriber::fmt().with_env_filter(filter).with_target(false).init();
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Config(c) => config_cmd::run(c),
        Cmd::Device(d) => device::run(d),
        Cmd::User(c) => accounts::user(c),
        Cmd::Department(c) => accounts::department(c),
        Cmd::Token(c) => accounts::token(c),
        Cmd::Catalogue(c) => accounts::import(c, false),
        Cmd::Entity(c) => accounts::import(c, true),
        Cmd::Models(m) => models::run(m),
        Cmd::Run { config } => {
            init_logging();
            run::run(&config)
        }
        #[cfg(feature = "sim")]
        Cmd::Demo { http, mqtt, data_dir, models, clips } => {
            init_logging();
            run::demo(hub::demo::DemoOptions { http, mqtt, data_dir, models, clips })
        }
        #[cfg(feature = "sim")]
        Cmd::Bench(b) => {
            init_logging();
            bench::run(b)
        }
    }
}
