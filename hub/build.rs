//! Embeds the duty room's built web UI (`hub/ui/dist`, made by `npm run build` in `hub/ui`;
//! `scripts/demo` and `scripts/test` do it) into the binary: each file as it is and gzipped,
//! with a content hash for its ETag. Without a build the binary serves a page that says how
//! to make one. `HUB_UI_DIST` names another folder.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use sha2::Digest as _;

fn files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            files(&p, out)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
}

fn content_type(p: &Path) -> &'static str {
    match p.extension().and_then(|e| e.to_str()).unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn main() {
    println!("cargo:rerun-if-env-changed=HUB_UI_DIST");
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let dist = std::env::var_os("HUB_UI_DIST")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("ui").join("dist"));
    println!("cargo:rerun-if-changed={}", dist.display());
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    let mut list = Vec::new();
    if dist.join("index.html").is_file() {
        files(&dist, &mut list).expect("reading the built UI");
    } else {
        println!(
            "cargo:warning=the web UI is not built ({} missing): this binary serves a page \
             saying how to build it (cd hub/ui && npm ci && npm run build)",
            dist.join("index.html").display()
        );
    }
    list.sort();
    let mut code = String::from("&[\n");
    for (i, p) in list.iter().enumerate() {
        let rel = p.strip_prefix(&dist).expect("under dist").to_string_lossy().replace('\\', "/");
        let data = std::fs::read(p).expect("reading a UI file");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&data).expect("gzip");
        let gz = gz.finish().expect("gzip");
        let (raw_name, gz_name) = (format!("ui-{i}"), format!("ui-{i}.gz"));
        std::fs::write(out_dir.join(&raw_name), &data).expect("writing to OUT_DIR");
        std::fs::write(out_dir.join(&gz_name), &gz).expect("writing to OUT_DIR");
        let hash = sha2::Sha256::digest(&data);
        let etag: String = hash.iter().take(12).map(|b| format!("{b:02x}")).collect();
        let _ = writeln!(
            code,
            "    Asset {{ path: {rel:?}, content_type: {:?}, etag: \"\\\"{etag}\\\"\", \
             raw: include_bytes!(concat!(env!(\"OUT_DIR\"), \"/{raw_name}\")), \
             gzip: include_bytes!(concat!(env!(\"OUT_DIR\"), \"/{gz_name}\")) }},",
            content_type(p)
        );
    }
    code.push(']');
    std::fs::write(out_dir.join("ui_assets.rs"), code).expect("writing to OUT_DIR");
}
