//! Golden detections: the committed vision manifests (`models/vision/*`) with the real
//! third-party models and images of the shared test data (`../shared/data` beside the
//! workspace) must reproduce `expected_outputs.json`, which was computed in Python with ONNX
//! Runtime and Pillow's bilinear resize.
//!
//! The shared data is not committed (third-party files); without it these tests fail and say
//! how to get it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use inference::library::{LoadOptions, ModelLibrary};
use inference::{Detection, Detector};

/// Largest accepted difference between a score and the golden one (scores in 0–1).
const SCORE_TOLERANCE: f32 = 0.05;
/// Smallest accepted intersection over union between a box and the golden one.
const MIN_IOU: f32 = 0.85;

/// The golden models: their key in `expected_outputs.json` and their name in the library.
const MODELS: [(&str, &str); 4] = [
    ("fastestdet", "fastestdet"),
    ("yolox_nano", "yolox-nano"),
    ("yunet", "yunet"),
    ("aizoo_mask", "aizoo-mask"),
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The shared data directory and the model mirror in it (or where the environment says).
fn shared_data() -> (PathBuf, PathBuf) {
    let data = std::env::var_os("HUB_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("../shared/data"));
    let mirror = std::env::var_os("HUB_MODEL_MIRROR")
        .map(PathBuf::from)
        .unwrap_or_else(|| data.join("models"));
    let needed = [data.join("expected_outputs.json"), data.join("images"), mirror.clone()];
    if let Some(missing) = needed.iter().find(|p| !p.exists()) {
        panic!(
            "shared test data missing: {} does not exist.\n\
             The vision golden tests need the third-party models, images and expected outputs \
             that live beside the project in ../shared/data (models/*.onnx, images/*.jpg, \
             expected_outputs.json; see its README.md, `sha256sum -c SHA256SUMS` verifies it). \
             Put that directory there, or set HUB_SHARED_DATA to it and, if the .onnx files \
             are elsewhere, HUB_MODEL_MIRROR to their directory. The model manifests in \
             models/vision/*/manifest.toml give each file's sha256 and published URL.",
            missing.display()
        );
    }
    (data, mirror)
}

/// A JPEG as packed RGB8.
fn decode_jpeg(path: &Path) -> (Vec<u8>, u32, u32) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut decoder = jpeg_decoder::Decoder::new(bytes.as_slice());
    let rgb = decoder.decode().unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let info = decoder.info().unwrap_or_else(|| panic!("{}: no header", path.display()));
    assert_eq!(info.pixel_format, jpeg_decoder::PixelFormat::RGB24, "{}", path.display());
    let (w, h) = (u32::from(info.width), u32::from(info.height));
    assert_eq!(rgb.len(), w as usize * h as usize * 3, "{}", path.display());
    (rgb, w, h)
}

#[derive(Debug, serde::Deserialize)]
struct Expected {
    label: String,
    score: f32,
    #[serde(rename = "box")]
    bbox: [f32; 4],
}

fn iou(a: &[f32; 4], d: &Detection) -> f32 {
    let b = [d.x1, d.y1, d.x2, d.y2];
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let area = |r: &[f32; 4]| (r[2] - r[0]) * (r[3] - r[1]);
    w * h / (area(a) + area(&b) - w * h)
}

/// Worst agreement seen for one model.
#[derive(Debug)]
struct Agreement {
    max_score_diff: f32,
    min_iou: f32,
    matched: usize,
}

#[test]
fn the_vision_models_reproduce_the_golden_detections_on_every_image() {
    let (data, mirror) = shared_data();
    let expected: serde_json::Value = serde_json::from_slice(
        &std::fs::read(data.join("expected_outputs.json")).expect("expected_outputs.json"),
    )
    .expect("expected_outputs.json is JSON");
    let images = &expected["images"];

    let search = [workspace().join("models/vision"), mirror];
    let lib = ModelLibrary::load(&[], &search, &LoadOptions::default());
    assert!(lib.report.failed.is_empty(), "vision models failed to load: {:#?}", lib.report.failed);

    let mut files: Vec<PathBuf> = std::fs::read_dir(data.join("images"))
        .expect("images/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jpg"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no images in {}", data.join("images").display());
    let frames: Vec<(String, Vec<u8>, u32, u32)> = files
        .iter()
        .map(|p| {
            let (rgb, w, h) = decode_jpeg(p);
            (p.file_name().unwrap_or_default().to_string_lossy().into_owned(), rgb, w, h)
        })
        .collect();

    let mut problems = Vec::new();
    let mut agreement = BTreeMap::new();
    let mut fastestdet_time = Duration::ZERO;
    for (key, name) in MODELS {
        let mut detector = Detector::new(lib.get(name).expect("loaded")).expect("detector");
        // The first run of a session is slower (ONNX Runtime allocates its arenas): keep it out
        // of the timing.
        let (_, rgb, w, h) = &frames[0];
        detector.detect(rgb, *w, *h).expect("warm-up detect");
        let mut worst = Agreement { max_score_diff: 0.0, min_iou: 1.0, matched: 0 };
        for (file, rgb, w, h) in &frames {
            let golden = &images[file.as_str()];
            assert_eq!(golden["size"], serde_json::json!([w, h]), "{file}: size");
            let want: Vec<Expected> = serde_json::from_value(golden[key].clone())
                .unwrap_or_else(|e| panic!("{file}: no golden list for {key}: {e}"));
            let start = Instant::now();
            let got = detector.detect(rgb, *w, *h).expect("detect");
            if key == "fastestdet" {
                fastestdet_time += start.elapsed();
            }
            if got.len() != want.len() {
                problems.push(format!(
                    "{key} {file}: {} detections, golden {}: got {got:?}",
                    got.len(),
                    want.len()
                ));
            }
            let mut used = vec![false; got.len()];
            for e in &want {
                let best = got
                    .iter()
                    .enumerate()
                    .filter(|(i, d)| !used[*i] && *d.label == *e.label)
                    .max_by(|a, b| iou(&e.bbox, a.1).total_cmp(&iou(&e.bbox, b.1)));
                let Some((i, d)) = best else {
                    problems.push(format!("{key} {file}: golden {e:?} not found in {got:?}"));
                    continue;
                };
                used[i] = true;
                let (ds, overlap) = ((d.score - e.score).abs(), iou(&e.bbox, d));
                worst.max_score_diff = worst.max_score_diff.max(ds);
                worst.min_iou = worst.min_iou.min(overlap);
                worst.matched += 1;
                if ds > SCORE_TOLERANCE || overlap < MIN_IOU {
                    problems.push(format!(
                        "{key} {file}: golden {e:?} vs {d:?}: score diff {ds:.4}, IoU {overlap:.4}"
                    ));
                }
                if let Some(lm) = d.landmarks {
                    // Face landmarks lie in (or very near) their box.
                    let (bw, bh) = (d.x2 - d.x1, d.y2 - d.y1);
                    let inside = lm.chunks_exact(2).all(|p| {
                        p[0] > d.x1 - 0.1 * bw
                            && p[0] < d.x2 + 0.1 * bw
                            && p[1] > d.y1 - 0.1 * bh
                            && p[1] < d.y2 + 0.1 * bh
                    });
                    if !inside {
                        problems.push(format!("{key} {file}: landmarks outside the box: {d:?}"));
                    }
                }
            }
            if key == "yunet" && got.iter().any(|d| d.landmarks.is_none()) {
                problems.push(format!("{key} {file}: a face without landmarks"));
            }
        }
        agreement.insert(key, worst);
    }
    println!("agreement with the golden detections per model: {agreement:#?}");
    println!(
        "FastestDet: {:.1} ms per detect call (mean over {} images after a warm-up, this \
         build's profile; Python reference: 3.6 ms for the model alone)",
        fastestdet_time.as_secs_f64() * 1000.0 / frames.len() as f64,
        frames.len()
    );
    assert!(problems.is_empty(), "{} mismatches:\n{}", problems.len(), problems.join("\n"));
}

#[test]
fn a_wrong_frame_size_is_refused_with_the_model_name() {
    let (_, mirror) = shared_data();
    let lib = ModelLibrary::load(
        &[],
        &[workspace().join("models/vision/fastestdet"), mirror],
        &LoadOptions::default(),
    );
    let mut detector = Detector::new(lib.get("fastestdet").expect("loaded")).expect("detector");
    let err = detector.detect(&[0u8; 30], 4, 4).expect_err("30 bytes are not a 4x4 RGB frame");
    let message = err.to_string();
    assert!(message.contains("fastestdet") && message.contains("48 bytes"), "{message}");
    assert_eq!(err.kind(), common::ErrorKind::InvalidArgument);
    // A uniform grey frame finds nothing and leaves the detector usable.
    assert_eq!(detector.detect(&[128u8; 64 * 48 * 3], 64, 48).expect("detect"), []);
}
