//! Evidence of video findings: the analysed frame as JPEG, clean and with the detections drawn,
//! written under `data_dir/evidence/YYYY-MM-DD/`; and snapshots of a camera's latest frame.

use std::path::{Path, PathBuf};

use common::UnixMs;
use inference::vision::Detection;
use jpeg_encoder::{ColorType, Encoder};

use crate::error::Error;
use crate::store::EvidenceRow;

/// Colour of the detections that made the rule fire, and of the others.
const MATCHED: [u8; 3] = [230, 30, 30];
const OTHER: [u8; 3] = [240, 200, 0];

/// Encodes a packed RGB8 frame as JPEG.
pub fn jpeg(rgb: &[u8], width: u32, height: u32, quality: u8) -> Result<Vec<u8>, String> {
    let (w, h) = (
        u16::try_from(width).map_err(|_| format!("frame width {width} is too large for JPEG"))?,
        u16::try_from(height)
            .map_err(|_| format!("frame height {height} is too large for JPEG"))?,
    );
    if rgb.len() < width as usize * height as usize * 3 {
        return Err(format!("{} bytes is not a {width}x{height} RGB frame", rgb.len()));
    }
    let mut out = Vec::with_capacity(rgb.len() / 8);
    Encoder::new(&mut out, quality)
        .encode(&rgb[..width as usize * height as usize * 3], w, h, ColorType::Rgb)
        .map_err(|e| format!("encoding JPEG: {e}"))?;
    Ok(out)
}

/// Draws a rectangle outline (clipped to the frame) of `thickness` pixels.
fn rect(rgb: &mut [u8], width: u32, height: u32, d: &Detection, colour: [u8; 3], thickness: i64) {
    let (w, h) = (i64::from(width), i64::from(height));
    let clamp = |v: f32, max: i64| (v.round() as i64).clamp(0, max - 1);
    let (x1, y1, x2, y2) = (clamp(d.x1, w), clamp(d.y1, h), clamp(d.x2, w), clamp(d.y2, h));
    let mut put = |x: i64, y: i64| {
        if (0..w).contains(&x) && (0..h).contains(&y) {
            let p = ((y * w + x) * 3) as usize;
            rgb[p..p + 3].copy_from_slice(&colour);
        }
    };
    for t in 0..thickness {
        for x in x1..=x2 {
            put(x, y1 + t);
            put(x, y2 - t);
        }
        for y in y1..=y2 {
            put(x1 + t, y);
            put(x2 - t, y);
        }
    }
}

/// The frame with every detection outlined: `matched` ones red, the others yellow.
pub fn annotate(
    rgb: &[u8],
    width: u32,
    height: u32,
    detections: &[Detection],
    matched: &[usize],
) -> Vec<u8> {
    let mut out = rgb.to_vec();
    let thickness = i64::from((width.max(height) / 320).max(2));
    for (i, d) in detections.iter().enumerate() {
        if !matched.contains(&i) {
            rect(&mut out, width, height, d, OTHER, thickness);
        }
    }
    for &i in matched {
        if let Some(d) = detections.get(i) {
            rect(&mut out, width, height, d, MATCHED, thickness);
        }
    }
    out
}

/// Writes the clean and the annotated frame of one occurrence; returns the row to store.
#[allow(clippy::too_many_arguments)]
pub fn write(
    root: &Path,
    camera: &str,
    rule: &str,
    at: UnixMs,
    rgb: &[u8],
    width: u32,
    height: u32,
    detections: &[Detection],
    matched: &[usize],
    quality: u8,
) -> Result<EvidenceRow, Error> {
    let day = chrono::DateTime::from_timestamp_millis(at)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "unknown-date".into());
    let dir = root.join(&day);
    std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
        context: format!("creating the evidence folder {}", dir.display()),
        source,
    })?;
    let stem = format!("{camera}-{rule}-{at}-{:08x}", rand::random::<u32>());
    let bad = |e: String| Error::InvalidArgument(format!("evidence of camera {camera}: {e}"));
    let clean = jpeg(rgb, width, height, quality).map_err(bad)?;
    let drawn = jpeg(&annotate(rgb, width, height, detections, matched), width, height, quality)
        .map_err(bad)?;
    let mut rel = Vec::new();
    for (suffix, bytes) in [("frame", &clean), ("annotated", &drawn)] {
        let name = format!("{day}/{stem}-{suffix}.jpg");
        let path: PathBuf = root.join(&name);
        std::fs::write(&path, bytes).map_err(|source| Error::Io {
            context: format!("writing evidence {}", path.display()),
            source,
        })?;
        rel.push(name);
    }
    let dets: Vec<serde_json::Value> = detections
        .iter()
        .enumerate()
        .map(|(i, d)| {
            serde_json::json!({
                "label": &*d.label,
                "score": (d.score * 1000.0).round() / 1000.0,
                "box": [d.x1.round(), d.y1.round(), d.x2.round(), d.y2.round()],
                "matched": matched.contains(&i),
            })
        })
        .collect();
    let annotated_path = rel.pop().unwrap_or_default();
    let frame_path = rel.pop().unwrap_or_default();
    Ok(EvidenceRow {
        captured_at: at,
        frame_path,
        annotated_path,
        details: serde_json::json!({ "width": width, "height": height, "detections": dets })
            .to_string(),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_frame_encodes_and_decodes_with_boxes_drawn() {
        let (w, h) = (64u32, 48u32);
        let rgb = vec![0u8; (w * h * 3) as usize];
        let d = Detection {
            class: 0,
            label: Arc::from("person"),
            score: 0.9,
            x1: 10.0,
            y1: 10.0,
            x2: 40.0,
            y2: 30.0,
            landmarks: None,
        };
        let drawn = annotate(&rgb, w, h, std::slice::from_ref(&d), &[0]);
        let p = ((10 * w + 20) * 3) as usize;
        assert_eq!(&drawn[p..p + 3], &MATCHED);
        assert_eq!(&drawn[0..3], &[0, 0, 0]);
        let bytes = jpeg(&drawn, w, h, 90).unwrap();
        let mut dec = jpeg_decoder::Decoder::new(&bytes[..]);
        let pixels = dec.decode().unwrap();
        let info = dec.info().unwrap();
        assert_eq!((info.width, info.height, pixels.len()), (64, 48, rgb.len()));
        assert!(jpeg(&rgb[..10], w, h, 90).is_err());
    }
}
