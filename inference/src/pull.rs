//! Fetching the published model files that manifests name (`hub models pull`).
//!
//! A manifest folder without its model file is "pending". A pull takes each pending file from a
//! source — a local directory (a mirror such as `../shared/data/models`) or the manifest's pinned
//! `url` — verifies its sha256 against the manifest and only then puts it beside the manifest.
//! This module does the choosing, verifying and placing; the HTTP download is the caller's
//! (the model library knows nothing of HTTP).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::library::manifest_dirs;
use crate::manifest::Manifest;

/// A manifest whose model file is not beside it.
#[derive(Debug, Clone)]
pub struct Pending {
    pub manifest: Manifest,
    /// Where the verified file goes (beside the manifest).
    pub dest: PathBuf,
}

/// What happened to one model.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The file was already beside its manifest.
    Present,
    /// Verified and placed, from this source (a path or a URL).
    Fetched(String),
    Failed(String),
}

/// The manifests found by [`scan`].
#[derive(Debug, Default)]
pub struct Scan {
    /// (model name, file) of manifests whose file is beside them.
    pub present: Vec<(String, PathBuf)>,
    pub pending: Vec<Pending>,
}

/// Manifests under `roots` (one or two folder levels down), each with its file present or
/// pending.
pub fn scan(roots: &[PathBuf]) -> Result<Scan, String> {
    let mut present = Vec::new();
    let mut pending = Vec::new();
    for dir in manifest_dirs(roots) {
        let path = dir.join("manifest.toml");
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let manifest: Manifest =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let dest = dir.join(&manifest.file);
        if dest.is_file() {
            present.push((manifest.name.clone(), dest));
        } else {
            pending.push(Pending { manifest, dest });
        }
    }
    Ok(Scan { present, pending })
}

/// Verifies `bytes` against the manifest's sha256 and writes them to `p.dest` (through a
/// temporary file, so an interrupted pull leaves no partial model).
pub fn place(p: &Pending, bytes: &[u8]) -> Result<(), String> {
    let actual = hex::encode(Sha256::digest(bytes));
    if !actual.eq_ignore_ascii_case(&p.manifest.sha256) {
        return Err(format!(
            "sha256 is {actual}, the manifest pins {}: not the published file",
            p.manifest.sha256
        ));
    }
    let tmp = p.dest.with_extension("part");
    std::fs::write(&tmp, bytes).map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &p.dest).map_err(|e| format!("moving into {}: {e}", p.dest.display()))
}

/// Takes a pending file from a local directory (by its file name).
pub fn from_dir(p: &Pending, dir: &Path) -> Outcome {
    let Some(name) = Path::new(&p.manifest.file).file_name() else {
        return Outcome::Failed(format!("manifest file {:?} has no file name", p.manifest.file));
    };
    let src = dir.join(name);
    match std::fs::read(&src) {
        Ok(bytes) => match place(p, &bytes) {
            Ok(()) => Outcome::Fetched(src.display().to_string()),
            Err(e) => Outcome::Failed(format!("{}: {e}", src.display())),
        },
        Err(e) => Outcome::Failed(format!("{}: {e}", src.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_files_are_verified_before_they_are_placed() {
        let root = std::env::temp_dir().join(format!("hub-pull-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let (models, mirror) = (root.join("models/m1"), root.join("mirror"));
        std::fs::create_dir_all(&models).unwrap();
        std::fs::create_dir_all(&mirror).unwrap();
        let b = crate::library::BUILTIN[0];
        std::fs::write(models.join("manifest.toml"), b.manifest).unwrap();
        let file = "coldchain-temp-ae.onnx";
        let mut corrupt = b.onnx.to_vec();
        corrupt[10] ^= 1;
        std::fs::write(mirror.join(file), &corrupt).unwrap();

        let Scan { present, pending } = scan(&[root.join("models")]).unwrap();
        assert!(present.is_empty());
        assert_eq!(pending.len(), 1);
        let failed = from_dir(&pending[0], &mirror);
        assert!(matches!(&failed, Outcome::Failed(m) if m.contains("sha256")), "{failed:?}");
        assert!(!models.join(file).exists(), "a wrong file is never placed");

        std::fs::write(mirror.join(file), b.onnx).unwrap();
        assert!(matches!(from_dir(&pending[0], &mirror), Outcome::Fetched(_)));
        let s = scan(&[root.join("models")]).unwrap();
        assert_eq!((s.present.len(), s.pending.len()), (1, 0));
        let _ = std::fs::remove_dir_all(root);
    }
}
