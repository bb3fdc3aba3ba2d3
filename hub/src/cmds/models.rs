//! `hub models pull`: fetches the published model files that manifests name, verifying each
//! against the sha256 its manifest pins, from a local directory or the manifest's URL.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use inference::pull::{self, Outcome, Pending};

#[derive(Subcommand)]
pub enum ModelsCmd {
    /// Put every model file a manifest names beside its manifest.
    Pull {
        /// Model folders to scan (manifests one or two levels down).
        #[arg(long = "models", default_value = "models")]
        models: Vec<PathBuf>,
        /// Take the files from this directory (e.g. ../shared/data/models) instead of the
        /// manifests' URLs.
        #[arg(long)]
        from: Option<PathBuf>,
    },
}

async fn download(p: &Pending) -> Outcome {
    let Some(url) = p.manifest.url.clone() else {
        return Outcome::Failed(
            "the manifest has no url; fetch the file by hand or pass --from DIR".into(),
        );
    };
    let fetched = async {
        let resp = reqwest::get(&url).await?.error_for_status()?;
        resp.bytes().await
    };
    match fetched.await {
        Ok(bytes) => match pull::place(p, &bytes) {
            Ok(()) => Outcome::Fetched(url),
            Err(e) => Outcome::Failed(format!("{url}: {e}")),
        },
        Err(e) => Outcome::Failed(format!("{url}: {e}")),
    }
}

pub fn run(cmd: ModelsCmd) -> ExitCode {
    let ModelsCmd::Pull { models, from } = cmd;
    let pull::Scan { present, pending } = match pull::scan(&models) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot read the model manifests: {e}");
            return ExitCode::from(2);
        }
    };
    for (name, path) in &present {
        println!("{name}: present ({})", path.display());
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let mut failed = 0;
    for p in &pending {
        let outcome = match &from {
            Some(dir) => pull::from_dir(p, dir),
            None => rt.block_on(download(p)),
        };
        match outcome {
            Outcome::Fetched(src) => {
                println!("{}: fetched from {src}, sha256 verified", p.manifest.name)
            }
            Outcome::Present => println!("{}: present", p.manifest.name),
            Outcome::Failed(why) => {
                failed += 1;
                eprintln!("{}: FAILED: {why}", p.manifest.name);
            }
        }
    }
    if failed > 0 {
        eprintln!("{failed} of {} model files could not be fetched", pending.len());
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
