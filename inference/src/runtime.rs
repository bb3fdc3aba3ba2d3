//! Loading the ONNX Runtime shared library (ort's `load-dynamic`).
//!
//! The library comes from the PyPI wheel `onnxruntime==1.31.1` (scripts/lib/setup.sh extracts it
//! into `.ort/`); `ORT_DYLIB_PATH` names it. We check the file exists before handing it to ort,
//! which would otherwise panic deep inside the first session.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::Error;

/// File name inside the wheel.
pub const LIB_NAME: &str = "libonnxruntime.so.1.31.1";

static INIT: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();

/// Where the library is expected: `ORT_DYLIB_PATH`, else `.ort/` in the working directory or
/// next to the executable's workspace.
pub fn library_path() -> PathBuf {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        return PathBuf::from(p);
    }
    let local = Path::new(".ort").join(LIB_NAME);
    if local.exists() {
        return local;
    }
    // target/{debug,release}/hub → repository root.
    if let Ok(exe) = std::env::current_exe()
        && let Some(root) = exe.ancestors().nth(3)
    {
        let p = root.join(".ort").join(LIB_NAME);
        if p.exists() {
            return p;
        }
    }
    local
}

/// Initialises ONNX Runtime once per process and returns its environment.
pub fn environment() -> Result<&'static ort::environment::Environment, Error> {
    let r = INIT.get_or_init(|| {
        let path = library_path();
        if !path.exists() {
            return Err(format!("missing:{}", path.display()));
        }
        match ort::init_from(&path) {
            Ok(builder) => {
                builder.with_name("hub").build().map_err(|e| format!("load:{}:{e}", path.display()))
            }
            Err(e) => Err(format!("load:{}:{e}", path.display())),
        }
    });
    match r {
        Ok(env) => Ok(env),
        Err(s) if s.starts_with("missing:") => {
            Err(Error::RuntimeMissing { path: PathBuf::from(&s["missing:".len()..]) })
        }
        Err(s) => {
            let rest = &s["load:".len()..];
            let (path, message) = rest.split_once(':').unwrap_or((rest, ""));
            Err(Error::RuntimeLoad { path: PathBuf::from(path), message: message.to_owned() })
        }
    }
}
