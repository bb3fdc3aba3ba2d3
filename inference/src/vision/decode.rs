//! Output decoders of the detector families, as `../shared/data/README.md` describes them.
//! Each writes candidate boxes in input-tensor pixels; NMS and the mapping back to the frame
//! follow in [`super::Detector`].
//!
//! The output shapes are checked against the manifest at load
//! ([`crate::manifest::check_outputs`]) and the
//! output lengths against those shapes on every run, so the decoders index without checks
//! failing at run time.

use crate::manifest::{Decoder, DetectionSpec, TensorSpec};
use crate::vision::heads::{AIZOO_VARIANCES, STRIDES, aizoo_anchors};

/// A box before NMS, in input-tensor pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Index into the labels.
    pub class: usize,
    pub score: f32,
    /// `[x1, y1, x2, y2]`.
    pub bbox: [f32; 4],
    /// Five `(x, y)` points (YuNet: eyes, nose tip, mouth corners).
    pub landmarks: Option<[f32; 10]>,
}

/// Per-model decoding state built once (the SSD anchors).
#[derive(Debug, Clone)]
pub struct DecodeState {
    spec: DetectionSpec,
    /// Output shapes without the batch dimension, in manifest order.
    dims: Vec<Vec<usize>>,
    anchors: Vec<[f32; 4]>,
}

/// Whether `score` passes `threshold` (a NaN score does not).
#[inline]
fn above(score: f32, threshold: f32) -> bool {
    score > threshold
}

#[inline]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// The best class of `scores` and its score (the first on ties).
#[inline]
fn best(scores: &[f32]) -> (usize, f32) {
    scores.iter().enumerate().fold(
        (0, f32::NEG_INFINITY),
        |acc, (i, &s)| {
            if s > acc.1 { (i, s) } else { acc }
        },
    )
}

fn xyxy(cx: f32, cy: f32, w: f32, h: f32) -> [f32; 4] {
    [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0]
}

impl DecodeState {
    /// For a manifest that passed [`crate::manifest::check_outputs`].
    pub fn new(spec: &DetectionSpec, outputs: &[TensorSpec]) -> Self {
        let dims = outputs
            .iter()
            .map(|o| o.shape.iter().skip(1).map(|d| (*d).max(0) as usize).collect())
            .collect();
        let anchors = match spec.decoder {
            Decoder::SsdAizoo => aizoo_anchors(),
            _ => Vec::new(),
        };
        Self { spec: spec.clone(), dims, anchors }
    }

    /// The number of values each output must have, in manifest order.
    pub fn output_len(&self, i: usize) -> usize {
        self.dims[i].iter().product()
    }

    /// Appends the candidates scoring above the threshold to `out`. `outputs` have the lengths
    /// [`DecodeState::output_len`] says.
    pub fn decode(&self, outputs: &[Vec<f32>], out: &mut Vec<Candidate>) {
        match self.spec.decoder {
            Decoder::Fastestdet => self.fastestdet(&outputs[0], out),
            Decoder::Yolox => self.yolox(&outputs[0], out),
            Decoder::Yunet => self.yunet(outputs, out),
            Decoder::SsdAizoo => self.ssd_aizoo(&outputs[0], &outputs[1], out),
        }
    }

    /// `[5 + C, gh, gw]`, channel-first. Per cell: obj = c0, offsets tanh(c1, c2) within the
    /// cell, size sigmoid(c3, c4) as fractions of the input, classes c5.. (probabilities).
    fn fastestdet(&self, o: &[f32], out: &mut Vec<Candidate>) {
        let (ch, gh, gw) = (self.dims[0][0], self.dims[0][1], self.dims[0][2]);
        let plane = gh * gw;
        let (iw, ih) = (self.spec.input_width as f32, self.spec.input_height as f32);
        let at = |c: usize, cell: usize| o[c * plane + cell];
        for y in 0..gh {
            for x in 0..gw {
                let cell = y * gw + x;
                let (class, cls) = (5..ch)
                    .map(|c| (c - 5, at(c, cell)))
                    .fold((0, f32::NEG_INFINITY), |a, b| if b.1 > a.1 { b } else { a });
                let score = at(0, cell).powf(0.6) * cls.powf(0.4);
                if !above(score, self.spec.score_threshold) {
                    continue;
                }
                let cx = (x as f32 + at(1, cell).tanh()) / gw as f32 * iw;
                let cy = (y as f32 + at(2, cell).tanh()) / gh as f32 * ih;
                let w = sigmoid(at(3, cell)) * iw;
                let h = sigmoid(at(4, cell)) * ih;
                out.push(Candidate { class, score, bbox: xyxy(cx, cy, w, h), landmarks: None });
            }
        }
    }

    /// `[N, 5 + C]` rows `(x, y, log w, log h, obj, cls…)` over the stride-8, 16, 32 grids,
    /// row-major; obj and cls are probabilities.
    fn yolox(&self, o: &[f32], out: &mut Vec<Candidate>) {
        let row_len = self.dims[0][1];
        let (iw, ih) = (self.spec.input_width as usize, self.spec.input_height as usize);
        let mut rows = o.chunks_exact(row_len);
        for s in STRIDES {
            let sf = s as f32;
            for gy in 0..ih / s {
                for gx in 0..iw / s {
                    let Some(r) = rows.next() else { return };
                    let (class, cls) = best(&r[5..]);
                    let score = r[4] * cls;
                    if !above(score, self.spec.score_threshold) {
                        continue;
                    }
                    let cx = (r[0] + gx as f32) * sf;
                    let cy = (r[1] + gy as f32) * sf;
                    let (w, h) = (r[2].exp() * sf, r[3].exp() * sf);
                    out.push(Candidate { class, score, bbox: xyxy(cx, cy, w, h), landmarks: None });
                }
            }
        }
    }

    /// Per stride s: cls, obj `[n, 1]`, bbox `[n, 4]`, kps `[n, 10]` over the grid
    /// (row-major); score √(cls·obj) with both clipped to 0–1; centre `(col + b0, row + b1)·s`,
    /// size `exp(b2, b3)·s`; landmarks `(col + k, row + k)·s`.
    fn yunet(&self, o: &[Vec<f32>], out: &mut Vec<Candidate>) {
        let iw = self.spec.input_width as usize;
        for (k, s) in STRIDES.into_iter().enumerate() {
            let (cls, obj, bbox, kps) = (&o[k], &o[3 + k], &o[6 + k], &o[9 + k]);
            let cols = iw / s;
            let sf = s as f32;
            for (i, (c, ob)) in cls.iter().zip(obj).enumerate() {
                let score = (c.clamp(0.0, 1.0) * ob.clamp(0.0, 1.0)).sqrt();
                if !above(score, self.spec.score_threshold) {
                    continue;
                }
                let (row, col) = ((i / cols) as f32, (i % cols) as f32);
                let b = &bbox[i * 4..][..4];
                let cx = (col + b[0]) * sf;
                let cy = (row + b[1]) * sf;
                let (w, h) = (b[2].exp() * sf, b[3].exp() * sf);
                let mut lm = [0.0f32; 10];
                for (j, (v, p)) in lm.iter_mut().zip(&kps[i * 10..][..10]).enumerate() {
                    *v = (p + if j % 2 == 0 { col } else { row }) * sf;
                }
                out.push(Candidate {
                    class: 0,
                    score,
                    bbox: xyxy(cx, cy, w, h),
                    landmarks: Some(lm),
                });
            }
        }
    }

    /// SSD: `loc [N, 4]` offsets from the anchors scaled by the variances, `cls [N, C]`
    /// probabilities (sigmoid applied in the model); boxes as fractions of the input.
    fn ssd_aizoo(&self, loc: &[f32], cls: &[f32], out: &mut Vec<Candidate>) {
        let classes = self.dims[1][1];
        let (iw, ih) = (self.spec.input_width as f32, self.spec.input_height as f32);
        let v = AIZOO_VARIANCES;
        for ((a, l), c) in
            self.anchors.iter().zip(loc.chunks_exact(4)).zip(cls.chunks_exact(classes))
        {
            let (class, score) = best(c);
            if !above(score, self.spec.score_threshold) {
                continue;
            }
            let cx = (l[0] * v[0] * a[2] + a[0]) * iw;
            let cy = (l[1] * v[1] * a[3] + a[1]) * ih;
            let w = (l[2] * v[2]).exp() * a[2] * iw;
            let h = (l[3] * v[3]).exp() * a[3] * ih;
            out.push(Candidate { class, score, bbox: xyxy(cx, cy, w, h), landmarks: None });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{ChannelOrder, Layout, Resize, check_outputs};

    fn spec(decoder: Decoder, w: u32, h: u32) -> DetectionSpec {
        DetectionSpec {
            decoder,
            input_width: w,
            input_height: h,
            channel_order: ChannelOrder::Rgb,
            layout: Layout::Nchw,
            resize: Resize::Stretch,
            pad_value: 0.0,
            scale: 1.0,
            mean: [0.0; 3],
            std: [1.0; 3],
            score_threshold: 0.5,
            nms_iou: 0.5,
        }
    }

    fn out(name: &str, shape: &[i64]) -> TensorSpec {
        TensorSpec { name: name.into(), shape: shape.to_vec(), dtype: crate::manifest::Dtype::F32 }
    }

    #[test]
    fn aizoo_has_5972_anchors_like_its_model() {
        let a = aizoo_anchors();
        assert_eq!(a.len(), 5972);
        // First cell of the 33×33 level: centre (0.5/33, 0.5/33), square anchor of 0.04.
        let c = 0.5f32 / 33.0;
        let close = |x: f32, y: f32| (x - y).abs() < 1e-7;
        assert!([c, c, 0.04, 0.04].iter().zip(a[0]).all(|(w, g)| close(*w, g)), "{:?}", a[0]);
        // Its 4th anchor: size 0.04 at ratio 0.42.
        assert!(close(a[3][2], 0.04 * 0.42f32.sqrt()));
        // The second cell is one column to the right.
        assert!(close(a[4][0], 1.5 / 33.0) && close(a[4][1], c));
    }

    #[test]
    fn shapes_are_checked_per_decoder() {
        let s = spec(Decoder::Yolox, 416, 416);
        assert!(check_outputs(&s, &[out("o", &[1, 3549, 85])], 80).is_ok());
        let e = check_outputs(&s, &[out("o", &[1, 3549, 85])], 2).unwrap_err();
        assert!(e.contains("80 classes, the labels 2"), "{e}");
        let e = check_outputs(&s, &[out("o", &[1, 3548, 85])], 80).unwrap_err();
        assert!(e.contains("[1, 3549, 5 + classes]"), "{e}");
        let e = check_outputs(&s, &[out("o", &[4, 3549, 85])], 80).unwrap_err();
        assert!(e.contains("batch of 1"), "{e}");
        let ssd = spec(Decoder::SsdAizoo, 260, 260);
        let ok = [out("loc", &[1, 5972, 4]), out("cls", &[1, 5972, 2])];
        assert!(check_outputs(&ssd, &ok, 2).is_ok());
        assert!(check_outputs(&ssd, &[ok[1].clone(), ok[0].clone()], 2).is_err());
        let yunet = spec(Decoder::Yunet, 640, 640);
        let mut outs = Vec::new();
        for (g, last) in [("cls", 1), ("obj", 1), ("bbox", 4), ("kps", 10)] {
            for s in [8i64, 16, 32] {
                outs.push(out(&format!("{g}_{s}"), &[1, (640 / s) * (640 / s), last]));
            }
        }
        assert!(check_outputs(&yunet, &outs, 1).is_ok());
        outs.swap(0, 1);
        assert!(check_outputs(&yunet, &outs, 1).unwrap_err().contains("cls_16"));
    }

    #[test]
    fn fastestdet_decodes_a_cell() {
        // 2 classes, 2×2 grid on a 64×32 input; only cell (x 1, y 0) scores.
        let s = spec(Decoder::Fastestdet, 64, 32);
        let d = DecodeState::new(&s, &[out("o", &[1, 7, 2, 2])]);
        let mut o = vec![0.0f32; 7 * 4];
        let cell = 1;
        let set = |o: &mut Vec<f32>, c: usize, v: f32| o[c * 4 + cell] = v;
        set(&mut o, 0, 0.9); // obj
        set(&mut o, 1, 0.0); // tanh(0) = 0: centre at the cell's corner
        set(&mut o, 2, 0.0);
        set(&mut o, 3, 0.0); // sigmoid(0) = 0.5 of the input
        set(&mut o, 4, 0.0);
        set(&mut o, 6, 0.8); // class 1
        let mut c = Vec::new();
        d.decode(&[o], &mut c);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].class, 1);
        assert!((c[0].score - 0.9f32.powf(0.6) * 0.8f32.powf(0.4)).abs() < 1e-6);
        // cx = 1/2·64 = 32, cy = 0, w = 32, h = 16.
        assert_eq!(c[0].bbox, [16.0, -8.0, 48.0, 8.0]);
    }

    #[test]
    fn yolox_decodes_rows_in_grid_order() {
        let s = spec(Decoder::Yolox, 64, 64);
        // 8² + 4² + 2² = 84 rows of 5 + 1.
        let d = DecodeState::new(&s, &[out("o", &[1, 84, 6])]);
        let mut o = vec![0.0f32; 84 * 6];
        // Row 64 is the first cell of the stride-16 grid; row 64 + 4 + 1 is (x 1, y 1).
        let r = &mut o[(64 + 5) * 6..][..6];
        r.copy_from_slice(&[0.5, 0.5, 0.0, 1f32.ln(), 0.9, 0.8]);
        let mut c = Vec::new();
        d.decode(&[o], &mut c);
        assert_eq!(c.len(), 1);
        assert!((c[0].score - 0.72).abs() < 1e-6);
        // Centre (1.5·16, 1.5·16) = (24, 24), size 16 × 16.
        assert_eq!(c[0].bbox, [16.0, 16.0, 32.0, 32.0]);
    }
}
