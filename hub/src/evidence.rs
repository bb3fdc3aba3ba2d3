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

/// A 5×7 bitmap font of the project's own for box labels: each glyph is seven rows of five
/// bits (bit 4 is the leftmost column). Letters are drawn as capitals; a character without a
/// glyph is drawn as `?`.
fn glyph(c: char) -> [u8; 7] {
    match c.to_ascii_lowercase() {
        'a' => [0b01110, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001],
        'b' => [0b11110, 0b10001, 0b10001, 0b11110, 0b10001, 0b10001, 0b11110],
        'c' => [0b01110, 0b10001, 0b10000, 0b10000, 0b10000, 0b10001, 0b01110],
        'd' => [0b11100, 0b10010, 0b10001, 0b10001, 0b10001, 0b10010, 0b11100],
        'e' => [0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b11111],
        'f' => [0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b10000],
        'g' => [0b01110, 0b10001, 0b10000, 0b10111, 0b10001, 0b10001, 0b01111],
        'h' => [0b10001, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001],
        'i' => [0b01110, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110],
        'j' => [0b00111, 0b00010, 0b00010, 0b00010, 0b00010, 0b10010, 0b01100],
        'k' => [0b10001, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010, 0b10001],
        'l' => [0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b11111],
        'm' => [0b10001, 0b11011, 0b10101, 0b10101, 0b10001, 0b10001, 0b10001],
        'n' => [0b10001, 0b10001, 0b11001, 0b10101, 0b10011, 0b10001, 0b10001],
        'o' => [0b01110, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110],
        'p' => [0b11110, 0b10001, 0b10001, 0b11110, 0b10000, 0b10000, 0b10000],
        'q' => [0b01110, 0b10001, 0b10001, 0b10001, 0b10101, 0b10010, 0b01101],
        'r' => [0b11110, 0b10001, 0b10001, 0b11110, 0b10100, 0b10010, 0b10001],
        's' => [0b01111, 0b10000, 0b10000, 0b01110, 0b00001, 0b00001, 0b11110],
        't' => [0b11111, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100],
        'u' => [0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110],
        'v' => [0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100],
        'w' => [0b10001, 0b10001, 0b10001, 0b10101, 0b10101, 0b10101, 0b01010],
        'x' => [0b10001, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001, 0b10001],
        'y' => [0b10001, 0b10001, 0b10001, 0b01010, 0b00100, 0b00100, 0b00100],
        'z' => [0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b11111],
        '0' => [0b01110, 0b10001, 0b10011, 0b10101, 0b11001, 0b10001, 0b01110],
        '1' => [0b00100, 0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110],
        '2' => [0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b01000, 0b11111],
        '3' => [0b11111, 0b00010, 0b00100, 0b00010, 0b00001, 0b10001, 0b01110],
        '4' => [0b00010, 0b00110, 0b01010, 0b10010, 0b11111, 0b00010, 0b00010],
        '5' => [0b11111, 0b10000, 0b11110, 0b00001, 0b00001, 0b10001, 0b01110],
        '6' => [0b00110, 0b01000, 0b10000, 0b11110, 0b10001, 0b10001, 0b01110],
        '7' => [0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b01000, 0b01000],
        '8' => [0b01110, 0b10001, 0b10001, 0b01110, 0b10001, 0b10001, 0b01110],
        '9' => [0b01110, 0b10001, 0b10001, 0b01111, 0b00001, 0b00010, 0b01100],
        '.' => [0, 0, 0, 0, 0, 0b01100, 0b01100],
        '%' => [0b11000, 0b11001, 0b00010, 0b00100, 0b01000, 0b10011, 0b00011],
        '-' => [0, 0, 0, 0b11111, 0, 0, 0],
        '_' => [0, 0, 0, 0, 0, 0, 0b11111],
        ' ' => [0; 7],
        _ => [0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0, 0b00100],
    }
}

/// A detection's label text: `person 87%`.
fn label_of(d: &Detection) -> String {
    format!("{} {:.0}%", d.label, (d.score * 100.0).clamp(0.0, 100.0))
}

/// Pixel scale of label text: 1 up to 479 px, 2 for 480-px frames, at most 4.
fn text_scale(width: u32, height: u32) -> i64 {
    i64::from((width.max(height) / 240).clamp(1, 4))
}

/// Draws `text` on a filled strip of `colour` just above the box (inside it, below its top
/// edge, when the box touches the top of the frame), clipped to the frame. The text is black
/// on light colours and white on dark ones.
fn label(rgb: &mut [u8], width: u32, height: u32, d: &Detection, colour: [u8; 3], text: &str) {
    let (w, h) = (i64::from(width), i64::from(height));
    let s = text_scale(width, height);
    let (cell_w, cell_h) = (6 * s, 9 * s);
    let strip_w = cell_w * text.chars().count() as i64 + s;
    let (x1, y1) = ((d.x1.round() as i64).clamp(0, w - 1), (d.y1.round() as i64).clamp(0, h - 1));
    let top = if y1 >= cell_h { y1 - cell_h } else { y1 };
    let left = x1.min(w - strip_w).max(0);
    let luma = 299 * u32::from(colour[0]) + 587 * u32::from(colour[1]) + 114 * u32::from(colour[2]);
    let ink = if luma > 150_000 { [0, 0, 0] } else { [255, 255, 255] };
    let mut put = |x: i64, y: i64, c: [u8; 3]| {
        if (0..w).contains(&x) && (0..h).contains(&y) {
            let p = ((y * w + x) * 3) as usize;
            rgb[p..p + 3].copy_from_slice(&c);
        }
    };
    for y in top..top + cell_h {
        for x in left..left + strip_w {
            put(x, y, colour);
        }
    }
    for (i, ch) in text.chars().enumerate() {
        let gx = left + s + cell_w * i as i64;
        for (row, bits) in glyph(ch).iter().enumerate() {
            for col in 0..5 {
                if bits & (0b10000 >> col) != 0 {
                    for dy in 0..s {
                        for dx in 0..s {
                            put(gx + col * s + dx, top + s + row as i64 * s + dy, ink);
                        }
                    }
                }
            }
        }
    }
}

/// The frame with every detection outlined and labelled with its label and score: `matched`
/// ones red, the others yellow.
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
            label(&mut out, width, height, d, OTHER, &label_of(d));
        }
    }
    for &i in matched {
        if let Some(d) = detections.get(i) {
            rect(&mut out, width, height, d, MATCHED, thickness);
            label(&mut out, width, height, d, MATCHED, &label_of(d));
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
    let annotated_path = rel.pop().unwrap_or_default();
    let frame_path = rel.pop().unwrap_or_default();
    Ok(EvidenceRow {
        captured_at: at,
        frame_path,
        annotated_path,
        details: details(width, height, detections, matched),
        missing: None,
    })
}

/// The row of an occurrence whose images could not be written: the detections are kept, the
/// paths are empty, and `missing` says why.
pub fn missing(
    at: UnixMs,
    width: u32,
    height: u32,
    detections: &[Detection],
    matched: &[usize],
    why: &Error,
) -> EvidenceRow {
    EvidenceRow {
        captured_at: at,
        frame_path: String::new(),
        annotated_path: String::new(),
        details: details(width, height, detections, matched),
        missing: Some(why.to_string()),
    }
}

/// Removes the files of evidence rows that will never be stored (their batch was given up:
/// they would be orphans no finding refers to). Missing files are not an error; a file that
/// cannot be removed is logged. Blocking: call it from a blocking thread.
pub fn discard(root: &Path, rows: &[EvidenceRow]) {
    let files = rows.iter().flat_map(|r| [&r.frame_path, &r.annotated_path]);
    for rel in files.filter(|f| !f.is_empty() && !f.contains("..") && !f.starts_with('/')) {
        let path = root.join(rel);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "removing the evidence of an unstored finding failed")
            }
        }
    }
}

/// JSON: the frame's size and the detections drawn.
fn details(width: u32, height: u32, detections: &[Detection], matched: &[usize]) -> String {
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
    serde_json::json!({ "width": width, "height": height, "detections": dets }).to_string()
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

    fn det(label: &str, score: f32, x1: f32, y1: f32, x2: f32, y2: f32) -> Detection {
        Detection { class: 0, label: Arc::from(label), score, x1, y1, x2, y2, landmarks: None }
    }

    /// Pixels of `colour` in rows `ys` and columns `xs`.
    fn count(
        rgb: &[u8],
        w: u32,
        xs: std::ops::Range<u32>,
        ys: std::ops::Range<u32>,
        colour: [u8; 3],
    ) -> usize {
        ys.flat_map(|y| xs.clone().map(move |x| ((y * w + x) * 3) as usize))
            .filter(|&p| rgb[p..p + 3] == colour)
            .count()
    }

    #[test]
    fn each_box_has_its_label_and_score_drawn_as_text_above_it() {
        // A 480-px frame: text at scale 2 (cells of 12×18 px).
        let (w, h) = (480u32, 270u32);
        let rgb = vec![0u8; (w * h * 3) as usize];
        let person = det("person", 0.87, 40.0, 100.0, 140.0, 250.0);
        let car = det("car", 0.5, 300.0, 60.0, 460.0, 200.0);
        let drawn = annotate(&rgb, w, h, &[person.clone(), car.clone()], &[0]);
        assert_eq!(text_scale(w, h), 2);
        for (d, colour, ink) in [(&person, MATCHED, [255, 255, 255]), (&car, OTHER, [0, 0, 0])] {
            let text = label_of(d);
            let on: usize = text.chars().flat_map(glyph).map(|row| row.count_ones() as usize).sum();
            let (x, y) = (d.x1 as u32, d.y1 as u32);
            let strip_w = 12 * text.chars().count() as u32 + 2;
            // The strip of 18 rows above the box: its colour, and exactly the glyphs' pixels
            // (each 2×2) in the ink colour.
            let (xs, ys) = (x..x + strip_w, y - 18..y);
            assert_eq!(count(&drawn, w, xs.clone(), ys.clone(), ink), on * 4, "{text}");
            assert!(count(&drawn, w, xs, ys, colour) > 0, "{text}: the strip's colour");
        }
        assert_eq!(label_of(&person), "person 87%");
        // Nothing drawn far from the boxes.
        assert_eq!(count(&drawn, w, 0..30, 0..50, [255, 255, 255]), 0);
        assert_eq!(glyph('P'), glyph('p'));
        assert_ne!(glyph('0'), glyph('o'));
    }

    #[test]
    fn a_label_at_the_top_edge_is_drawn_inside_the_box() {
        let (w, h) = (240u32, 135u32);
        let rgb = vec![0u8; (w * h * 3) as usize];
        let d = det("dog", 0.9, 200.0, 0.0, 239.0, 100.0);
        let drawn = annotate(&rgb, w, h, std::slice::from_ref(&d), &[0]);
        // Scale 1, pushed left to fit: "dog 90%" is 7 cells of 6 px + 1.
        let on: usize =
            label_of(&d).chars().flat_map(glyph).map(|row| row.count_ones() as usize).sum();
        assert_eq!(count(&drawn, w, 0..w, 0..9, [255, 255, 255]), on);
    }
}
