//! The model library: every model folder (a `manifest.toml`, beside its `.onnx` or naming one
//! kept in a mirror directory) found on the search path, verified by sha256 and loaded once into
//! a small pool of ONNX Runtime sessions. A bad or missing model is reported by name; the others
//! load.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ort::session::Session;
use ort::value::{Tensor, TensorRef};
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
    /// A free session if there is one, else the first once it is free.
    fn session(&self) -> std::sync::MutexGuard<'_, Session> {
        self.sessions
            .iter()
            .find_map(|s| s.try_lock().ok())
            .unwrap_or_else(|| self.sessions[0].lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Runs the model on one f32 input of `shape` and returns its first output, flattened.
    /// Blocking and CPU-heavy: call it off the async runtime.
    pub fn run_f32(&self, input: Vec<f32>, shape: &[usize]) -> Result<Vec<f32>, Error> {
        let name = &self.manifest.name;
        let err = |e: ort::Error| Error::Session { model: name.clone(), message: e.to_string() };
        let mut session = self.session();
        let tensor = Tensor::from_array((shape.to_vec(), input)).map_err(err)?;
        let input_name = self.manifest.inputs[0].name.as_str();
        let outputs = session.run(ort::inputs![input_name => tensor]).map_err(err)?;
        let out_name = self.manifest.outputs[0].name.as_str();
        let (_, data) = outputs[out_name].try_extract_tensor::<f32>().map_err(err)?;
        Ok(data.to_vec())
    }

    /// Runs the model on the borrowed f32 input `input` of `shape` and copies every output of
    /// the manifest, in its order, into `outputs` (one buffer each, cleared and refilled, so
    /// buffers kept by the caller are reused). Blocking and CPU-heavy.
    pub fn run_f32_into(
        &self,
        input: &[f32],
        shape: &[usize],
        outputs: &mut [Vec<f32>],
    ) -> Result<(), Error> {
        let name = &self.manifest.name;
        let err = |e: ort::Error| Error::Session { model: name.clone(), message: e.to_string() };
        if outputs.len() != self.manifest.outputs.len() {
            return Err(Error::Session {
                model: name.clone(),
                message: format!(
                    "{} output buffers for {} outputs",
                    outputs.len(),
                    self.manifest.outputs.len()
                ),
            });
        }
        let mut session = self.session();
        let tensor = TensorRef::from_array_view((shape, input)).map_err(err)?;
        let input_name = self.manifest.inputs[0].name.as_str();
        let results = session.run(ort::inputs![input_name => tensor]).map_err(err)?;
        for (spec, buf) in self.manifest.outputs.iter().zip(outputs.iter_mut()) {
            let value = results.get(spec.name.as_str()).ok_or_else(|| Error::Output {
                model: name.clone(),
                output: spec.name.clone(),
                message: "not among the model's outputs".into(),
            })?;
            let (_, data) = value.try_extract_tensor::<f32>().map_err(err)?;
            buf.clear();
            buf.extend_from_slice(data);
        }
        Ok(())
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

/// How many folder levels below a search-path directory are searched for manifests, so
/// `models/` finds both `models/<name>/` and `models/vision/<name>/`.
const SEARCH_DEPTH: usize = 2;

/// Folders under the search path that hold a `manifest.toml`, in search order (a search-path
/// directory's own manifest, else its subfolders by name, depth first). A model folder is not
/// searched further.
pub(crate) fn manifest_dirs(search_path: &[PathBuf]) -> Vec<PathBuf> {
    fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
        if dir.join("manifest.toml").is_file() {
            out.push(dir.to_path_buf());
            return;
        }
        if depth == SEARCH_DEPTH {
            return;
        }
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        let mut subdirs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .filter(|p| p.file_name().is_some_and(|n| !n.to_string_lossy().starts_with('.')))
            .collect();
        subdirs.sort();
        for sub in subdirs {
            walk(&sub, depth + 1, out);
        }
    }
    let mut out = Vec::new();
    for dir in search_path {
        walk(dir, 0, &mut out);
    }
    out
}

/// A cheap fingerprint of the files on the search path (paths, sizes and modification times of
/// the files in each directory and its subdirectories, as deep as manifests are searched), so a
/// watcher notices a new, changed or removed model without reading it.
pub fn fingerprint(search_path: &[PathBuf]) -> u64 {
    use std::hash::{Hash, Hasher};
    fn walk(dir: &Path, depth: usize, h: &mut std::collections::hash_map::DefaultHasher) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for p in paths {
            if p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')) {
                continue;
            }
            if p.is_dir() {
                if depth < SEARCH_DEPTH {
                    walk(&p, depth + 1, h);
                }
            } else if let Ok(m) = p.metadata() {
                p.hash(h);
                m.len().hash(h);
                m.modified().ok().hash(h);
            }
        }
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for dir in search_path {
        dir.hash(&mut h);
        walk(dir, 0, &mut h);
    }
    h.finish()
}

/// Where a file a manifest in `dir` names is: beside the manifest, else by its file name in each
/// search-path directory in order (a mirror of third-party models). The error says where it
/// looked.
fn locate(dir: &Path, file: &str, search_path: &[PathBuf]) -> Result<PathBuf, (PathBuf, String)> {
    let beside = dir.join(file);
    if beside.is_file() {
        return Ok(beside);
    }
    if let Some(name) = Path::new(file).file_name() {
        for d in search_path {
            let p = d.join(name);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    let looked: Vec<String> = search_path.iter().map(|d| d.display().to_string()).collect();
    let message = format!(
        "not found beside the manifest, nor by name in the search path [{}]",
        looked.join(", ")
    );
    Err((beside, message))
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
    manifest: include_str!("../../models/coldchain-temp-ae/manifest.toml"),
    onnx: include_bytes!("../../models/coldchain-temp-ae/coldchain-temp-ae.onnx"),
}];

fn load_one(dir: &Path, search_path: &[PathBuf], opts: &LoadOptions) -> Result<Model, Error> {
    let mpath = dir.join("manifest.toml");
    let folder = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let text = std::fs::read_to_string(&mpath).map_err(|e| Error::Manifest {
        model: folder.clone(),
        path: mpath.clone(),
        message: e.to_string(),
    })?;
    build(&text, &folder, dir, opts, |file| {
        let path = locate(dir, file, search_path)?;
        std::fs::read(&path).map(|b| (path.clone(), b)).map_err(|e| (path, e.to_string()))
    })
}

/// Parses and checks a manifest, reads its labels file, verifies the model bytes and opens the
/// sessions. `fetch` reads a file the manifest names: its path and bytes, or where it should
/// have been and why it could not be read.
fn build(
    manifest_text: &str,
    folder: &str,
    dir: &Path,
    opts: &LoadOptions,
    fetch: impl Fn(&str) -> Result<(PathBuf, Vec<u8>), (PathBuf, String)>,
) -> Result<Model, Error> {
    let mpath = dir.join("manifest.toml");
    let manifest_err = |model: &str, message: String| Error::Manifest {
        model: model.into(),
        path: mpath.clone(),
        message,
    };
    let mut manifest: Manifest =
        toml::from_str(manifest_text).map_err(|e| manifest_err(folder, e.to_string()))?;
    let name = manifest.name.clone();
    manifest.check().map_err(|m| manifest_err(&name, m))?;
    if let Some(file) = manifest.labels_file.clone() {
        let (path, bytes) = fetch(&file).map_err(|(path, message)| Error::File {
            model: name.clone(),
            path,
            message,
        })?;
        let text = String::from_utf8(bytes).map_err(|_| Error::File {
            model: name.clone(),
            path: path.clone(),
            message: "the labels file is not UTF-8".into(),
        })?;
        manifest
            .set_labels(&text)
            .map_err(|m| manifest_err(&name, format!("labels_file {}: {m}", path.display())))?;
    }
    let (path, bytes) = fetch(&manifest.file).map_err(|(path, message)| {
        let message = match &manifest.url {
            Some(url) => format!(
                "{message}; it is published at {url} (sha256 {}): put it beside the manifest or \
                 in a directory of the model search path",
                manifest.sha256
            ),
            None => format!("{message}; the manifest's description says where it comes from"),
        };
        Error::File { model: name.clone(), path, message }
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
    // The manifest's tensor names must be the model's, and its shapes agree where both fix a
    // size: decoders index outputs by the manifest's shapes.
    {
        let s = sessions[0].lock().unwrap_or_else(|e| e.into_inner());
        let sides =
            [("input", &manifest.inputs, s.inputs()), ("output", &manifest.outputs, s.outputs())];
        for (side, specs, outlets) in sides {
            for spec in specs {
                let Some(outlet) = outlets.iter().find(|o| o.name() == spec.name) else {
                    return Err(manifest_err(
                        &name,
                        format!("the model has no {side} {:?}", spec.name),
                    ));
                };
                if let Some(shape) = outlet.dtype().tensor_shape() {
                    let agree = shape.len() == spec.shape.len()
                        && shape.iter().zip(&spec.shape).all(|(m, d)| *m < 0 || *d < 0 || m == d);
                    if !agree {
                        return Err(manifest_err(
                            &name,
                            format!(
                                "the model's {side} {:?} has shape {:?}, the manifest says {:?}",
                                spec.name,
                                &shape[..],
                                spec.shape
                            ),
                        ));
                    }
                }
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
            // Only the ONNX file is embedded: a builtin model gives its labels inline.
            let model = build(b.manifest, b.folder, &dir, opts, |file| {
                let path = dir.join(file);
                if file.ends_with(".onnx") {
                    Ok((path, b.onnx.to_vec()))
                } else {
                    Err((path, "a builtin model embeds only its ONNX file".into()))
                }
            });
            (dir, model)
        });
        let found = manifest_dirs(search_path).into_iter().map(|dir| {
            let model = load_one(&dir, search_path, opts);
            (dir, model)
        });
        for (dir, model) in builtin.chain(found) {
            match model {
                Ok(model) => {
                    let name = model.manifest.name.clone();
                    if let Some(first) = lib.models.get(&name) {
                        // The project's built-in models are also in its models/ folder.
                        if first.manifest.sha256 != model.manifest.sha256 {
                            warn!(model = %name, path = %dir.display(), "model shadowed by an earlier one of the same name");
                        }
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

    /// The committed FastestDet manifest, renamed to `name` and naming the file `file`.
    fn vision_manifest(name: &str, file: &str) -> String {
        include_str!("../../models/vision/fastestdet/manifest.toml")
            .replace("name = \"fastestdet\"", &format!("name = \"{name}\""))
            .replace("file = \"fastestdet_coco80_352.onnx\"", &format!("file = \"{file}\""))
    }

    #[test]
    fn a_missing_or_corrupt_vision_model_is_reported_by_name_and_the_others_load() {
        let root = temp_dir("vision");
        let mirror = temp_dir("vision-mirror");
        let b = BUILTIN[0];
        let good = root.join("good");
        std::fs::create_dir_all(&good).unwrap();
        let copy = b.manifest.replace("name = \"coldchain-temp-ae\"", "name = \"copy\"");
        std::fs::write(good.join("manifest.toml"), copy).unwrap();
        std::fs::write(good.join("coldchain-temp-ae.onnx"), b.onnx).unwrap();
        // Two levels down, as models/vision/<name>/.
        for (folder, name, file) in
            [("missing", "missing-det", "absent.onnx"), ("corrupt", "corrupt-det", "corrupt.onnx")]
        {
            let dir = root.join("vision").join(folder);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("manifest.toml"), vision_manifest(name, file)).unwrap();
        }
        std::fs::write(mirror.join("corrupt.onnx"), b"not the published bytes").unwrap();

        let lib = ModelLibrary::load(&[], &[root.clone(), mirror.clone()], &LoadOptions::default());
        assert_eq!(lib.names().collect::<Vec<_>>(), vec!["copy"]);
        let failed: Vec<&str> = lib.report.failed.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(failed, ["corrupt-det", "missing-det"]);
        let corrupt = &lib.report.failed[0].error;
        assert!(corrupt.contains("sha256") && corrupt.contains("corrupt.onnx"), "{corrupt}");
        let missing = &lib.report.failed[1].error;
        assert!(missing.contains("absent.onnx") && missing.contains("not found"), "{missing}");
        assert!(missing.contains("https://raw.githubusercontent.com/dog-qiuqiu"), "{missing}");
        assert!(missing.contains(&mirror.display().to_string()), "{missing}");
        let _ = std::fs::remove_dir_all(root);
        let _ = std::fs::remove_dir_all(mirror);
    }

    #[test]
    fn files_not_beside_the_manifest_are_found_by_name_in_the_search_path() {
        let root = temp_dir("by-name");
        let mirror = temp_dir("by-name-mirror");
        let b = BUILTIN[0];
        let dir = root.join("sensor");
        std::fs::create_dir_all(&dir).unwrap();
        let manifest = b.manifest.replace(
            "file = \"coldchain-temp-ae.onnx\"",
            "file = \"weights/coldchain-temp-ae.onnx\"\nlabels_file = \"names.txt\"",
        );
        std::fs::write(dir.join("manifest.toml"), manifest).unwrap();
        std::fs::write(mirror.join("coldchain-temp-ae.onnx"), b.onnx).unwrap();
        std::fs::write(mirror.join("names.txt"), "reconstruction\n").unwrap();
        let lib = ModelLibrary::load(&[], &[root.clone(), mirror.clone()], &LoadOptions::default());
        assert!(lib.report.failed.is_empty(), "{:?}", lib.report.failed);
        let model = lib.get("coldchain-temp-ae").unwrap();
        assert_eq!(model.path, mirror.join("coldchain-temp-ae.onnx"));
        assert_eq!(model.manifest.labels, ["reconstruction"]);
        let _ = std::fs::remove_dir_all(root);
        let _ = std::fs::remove_dir_all(mirror);
    }
}
