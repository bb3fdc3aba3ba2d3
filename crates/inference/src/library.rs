//! The model library: every model folder (a `manifest.toml` beside its `.onnx`) found on the
//! search path, verified by sha256 and loaded once into a small pool of ONNX Runtime sessions.
//! A bad or missing model is reported by name; the others load.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ort::session::Session;
use ort::value::Tensor;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::manifest::Manifest;
use crate::{Error, runtime};

/// A loaded model: its manifest and sessions.
pub struct Model {
    pub manifest: Manifest,
    pub path: PathBuf,
    /// `Session::run` takes `&mut self`; a pool lets several threads run one model at once.
    sessions: Vec<Mutex<Session>>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("name", &self.manifest.name).finish()
    }
}

impl Model {
    /// Runs the model on one f32 input of `shape` and returns its first output, flattened.
    /// Blocking and CPU-heavy: call it off the async runtime.
    pub fn run_f32(&self, input: Vec<f32>, shape: &[usize]) -> Result<Vec<f32>, Error> {
        let name = &self.manifest.name;
        let err = |e: ort::Error| Error::Session { model: name.clone(), message: e.to_string() };
        // Take a free session if there is one, else wait on the first.
        let guard = self
            .sessions
            .iter()
            .find_map(|s| s.try_lock().ok())
            .unwrap_or_else(|| self.sessions[0].lock().unwrap_or_else(|e| e.into_inner()));
        let mut session = guard;
        let tensor = Tensor::from_array((shape.to_vec(), input)).map_err(err)?;
        let input_name = self.manifest.inputs[0].name.as_str();
        let outputs = session.run(ort::inputs![input_name => tensor]).map_err(err)?;
        let out_name = self.manifest.outputs[0].name.as_str();
        let (_, data) = outputs[out_name].try_extract_tensor::<f32>().map_err(err)?;
        Ok(data.to_vec())
    }
}

/// A model that failed to load, by name (or folder when the manifest is unreadable).
#[derive(Debug, Clone, Serialize)]
pub struct FailedModel {
    pub name: String,
    pub path: PathBuf,
    pub error: String,
}

/// A loaded model, as the API lists it.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub name: String,
    pub version: String,
    pub task: crate::manifest::Task,
    pub path: PathBuf,
    pub sha256: String,
}

/// What a load found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadReport {
    pub loaded: Vec<ModelInfo>,
    pub failed: Vec<FailedModel>,
}

/// The loaded models by name.
#[derive(Debug, Default)]
pub struct ModelLibrary {
    models: BTreeMap<String, Arc<Model>>,
    pub report: LoadReport,
}

/// Options of a load.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Sessions per model.
    pub sessions: usize,
    /// Intra-op threads per session (1 is best for small models on 2 cores).
    pub threads: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self { sessions: 1, threads: 1 }
    }
}

/// Folders under the search path that hold a `manifest.toml`, in search order.
fn manifest_dirs(search_path: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in search_path {
        if dir.join("manifest.toml").is_file() {
            out.push(dir.clone());
            continue;
        }
        let Ok(entries) = std::fs::read_dir(dir) else { continue };
        let mut subdirs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("manifest.toml").is_file())
            .collect();
        subdirs.sort();
        out.extend(subdirs);
    }
    out
}

/// A model shipped inside the binary: the project's own small models, so the hub works from
/// any directory.
#[derive(Debug, Clone, Copy)]
pub struct Builtin {
    pub folder: &'static str,
    pub manifest: &'static str,
    pub onnx: &'static [u8],
}

/// The project's own models (`models/` at the repository root).
pub const BUILTIN: &[Builtin] = &[Builtin {
    folder: "coldchain-temp-ae",
    manifest: include_str!("../../../models/coldchain-temp-ae/manifest.toml"),
    onnx: include_bytes!("../../../models/coldchain-temp-ae/coldchain-temp-ae.onnx"),
}];

fn load_one(dir: &Path, opts: &LoadOptions) -> Result<Model, Error> {
    let mpath = dir.join("manifest.toml");
    let folder = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let text = std::fs::read_to_string(&mpath).map_err(|e| Error::Manifest {
        model: folder.clone(),
        path: mpath.clone(),
        message: e.to_string(),
    })?;
    build(&text, &folder, dir, opts, |path| std::fs::read(path))
}

/// Parses and checks a manifest, verifies the model bytes and opens the sessions.
fn build(
    manifest_text: &str,
    folder: &str,
    dir: &Path,
    opts: &LoadOptions,
    read: impl FnOnce(&Path) -> std::io::Result<Vec<u8>>,
) -> Result<Model, Error> {
    let mpath = dir.join("manifest.toml");
    let manifest_err = |model: &str, message: String| Error::Manifest {
        model: model.into(),
        path: mpath.clone(),
        message,
    };
    let manifest: Manifest =
        toml::from_str(manifest_text).map_err(|e| manifest_err(folder, e.to_string()))?;
    let name = manifest.name.clone();
    manifest.check().map_err(|m| manifest_err(&name, m))?;
    let path = dir.join(&manifest.file);
    let bytes = read(&path).map_err(|e| Error::File {
        model: name.clone(),
        path: path.clone(),
        message: e.to_string(),
    })?;
    let actual = hex::encode(Sha256::digest(&bytes));
    if !actual.eq_ignore_ascii_case(&manifest.sha256) {
        return Err(Error::Checksum {
            model: name.clone(),
            path: path.clone(),
            expected: manifest.sha256.clone(),
            actual,
        });
    }
    let env = runtime::environment()?;
    let session_err = |e: String| Error::Session { model: name.clone(), message: e };
    let mut sessions = Vec::with_capacity(opts.sessions.max(1));
    for _ in 0..opts.sessions.max(1) {
        let s = Session::builder(env)
            .map_err(|e| session_err(e.to_string()))?
            .with_intra_threads(opts.threads.max(1))
            .map_err(|e| session_err(e.to_string()))?
            .commit_from_memory(&bytes)
            .map_err(|e| session_err(e.to_string()))?;
        sessions.push(Mutex::new(s));
    }
    // The manifest's tensor names must be the model's.
    {
        let s = sessions[0].lock().unwrap_or_else(|e| e.into_inner());
        for spec in &manifest.inputs {
            if !s.inputs().iter().any(|o| o.name() == spec.name) {
                return Err(manifest_err(&name, format!("the model has no input {:?}", spec.name)));
            }
        }
        for spec in &manifest.outputs {
            if !s.outputs().iter().any(|o| o.name() == spec.name) {
                return Err(manifest_err(
                    &name,
                    format!("the model has no output {:?}", spec.name),
                ));
            }
        }
    }
    Ok(Model { manifest, path, sessions })
}

impl ModelLibrary {
    /// Loads every model on the search path. Never fails as a whole: problems are in
    /// `report.failed`, and a model name found twice keeps the first (earlier path wins).
    pub fn load(builtin: &[Builtin], search_path: &[PathBuf], opts: &LoadOptions) -> Self {
        let mut lib = ModelLibrary::default();
        let builtin = builtin.iter().map(|b| {
            let dir = PathBuf::from("builtin").join(b.folder);
            let model = build(b.manifest, b.folder, &dir, opts, |_| Ok(b.onnx.to_vec()));
            (dir, model)
        });
        let found = manifest_dirs(search_path).into_iter().map(|dir| {
            let model = load_one(&dir, opts);
            (dir, model)
        });
        for (dir, model) in builtin.chain(found) {
            match model {
                Ok(model) => {
                    let name = model.manifest.name.clone();
                    if lib.models.contains_key(&name) {
                        warn!(model = %name, path = %dir.display(), "model shadowed by an earlier one of the same name");
                        continue;
                    }
                    info!(model = %name, version = %model.manifest.version, "model loaded");
                    lib.report.loaded.push(ModelInfo {
                        name: name.clone(),
                        version: model.manifest.version.clone(),
                        task: model.manifest.task,
                        path: model.path.clone(),
                        sha256: model.manifest.sha256.clone(),
                    });
                    lib.models.insert(name, Arc::new(model));
                }
                Err(e) => {
                    let name = match &e {
                        Error::Manifest { model, .. }
                        | Error::File { model, .. }
                        | Error::Checksum { model, .. }
                        | Error::Session { model, .. } => model.clone(),
                        _ => dir.display().to_string(),
                    };
                    warn!(model = %name, error = %e, "model not loaded");
                    lib.report.failed.push(FailedModel { name, path: dir, error: e.to_string() });
                }
            }
        }
        lib
    }

    pub fn get(&self, name: &str) -> Result<Arc<Model>, Error> {
        self.models.get(name).cloned().ok_or_else(|| Error::NotFound { model: name.into() })
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.models.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("hub-lib-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn the_builtin_sensor_model_loads_and_scores_normal_windows_low() {
        let lib = ModelLibrary::load(BUILTIN, &[], &LoadOptions::default());
        assert!(lib.report.failed.is_empty(), "{:?}", lib.report.failed);
        let model = crate::sensor::SensorModel::new(lib.get("coldchain-temp-ae").unwrap()).unwrap();
        // A flat window at the baseline and a window 6 °C above it.
        let mut x = vec![0.0f32; 20];
        x.extend(std::iter::repeat_n(3.0f32, 20));
        let scores = model.score(x).unwrap();
        assert!(f64::from(scores[0]) < model.spec.threshold, "{scores:?}");
        assert!(f64::from(scores[1]) > model.spec.threshold, "{scores:?}");
    }

    #[test]
    fn a_corrupt_model_is_reported_by_name_and_the_others_load() {
        let root = temp_dir("corrupt");
        let good = root.join("good");
        let bad = root.join("bad");
        for (dir, b) in [(&good, BUILTIN[0]), (&bad, BUILTIN[0])] {
            std::fs::create_dir_all(dir).unwrap();
            let manifest = if dir == &bad {
                b.manifest.replace("name = \"coldchain-temp-ae\"", "name = \"broken-model\"")
            } else {
                b.manifest.replace("name = \"coldchain-temp-ae\"", "name = \"copy\"")
            };
            std::fs::write(dir.join("manifest.toml"), manifest).unwrap();
            let mut bytes = b.onnx.to_vec();
            if dir == &bad {
                bytes[100] ^= 0xff;
            }
            std::fs::write(dir.join("coldchain-temp-ae.onnx"), bytes).unwrap();
        }
        let lib = ModelLibrary::load(&[], std::slice::from_ref(&root), &LoadOptions::default());
        assert_eq!(lib.names().collect::<Vec<_>>(), vec!["copy"]);
        assert_eq!(lib.report.failed.len(), 1);
        let f = &lib.report.failed[0];
        assert_eq!(f.name, "broken-model");
        assert!(f.error.contains("sha256"), "{}", f.error);
        let _ = std::fs::remove_dir_all(root);
    }
}
