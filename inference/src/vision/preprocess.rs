//! From a packed RGB8 frame to a model's input tensor: fit (stretch or top-left letterbox),
//! Pillow-exact bilinear resize, channel order, normalisation.

use crate::manifest::{ChannelOrder, DetectionSpec, Resize};

use super::resize::Resizer;

/// A frame that cannot be an RGB8 image of the size given (cheap: checked on every frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Width or height is zero.
    Empty,
    /// The buffer is not `width · height · 3` bytes.
    Length { expected: usize, actual: usize },
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Empty => f.write_str("the frame has no pixels"),
            FrameError::Length { expected, actual } => {
                write!(f, "an RGB8 frame of this size has {expected} bytes, not {actual}")
            }
        }
    }
}

/// How input-tensor pixels relate to frame pixels: `frame = input / scale` per axis (the
/// letterbox pads right and bottom, so there is no offset).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Geometry {
    /// Input pixels per frame pixel along x.
    pub scale_x: f32,
    /// Input pixels per frame pixel along y.
    pub scale_y: f32,
    /// Width of the resized frame inside the input (the input width unless letterboxed).
    pub fitted_width: usize,
    /// Height of the resized frame inside the input.
    pub fitted_height: usize,
}

impl Geometry {
    /// Where `spec` puts a `width` × `height` frame in its input.
    pub fn fit(spec: &DetectionSpec, width: u32, height: u32) -> Geometry {
        let (iw, ih) = (spec.input_width as usize, spec.input_height as usize);
        match spec.resize {
            Resize::Stretch => Geometry {
                scale_x: iw as f32 / width as f32,
                scale_y: ih as f32 / height as f32,
                fitted_width: iw,
                fitted_height: ih,
            },
            Resize::LetterboxTopLeft => {
                // f64 and truncation as in the reference (`int(w * r)` in Python), so the
                // fitted size is the same to the pixel.
                let r = (iw as f64 / f64::from(width)).min(ih as f64 / f64::from(height));
                let fw = ((f64::from(width) * r) as usize).clamp(1, iw);
                let fh = ((f64::from(height) * r) as usize).clamp(1, ih);
                Geometry {
                    scale_x: r as f32,
                    scale_y: r as f32,
                    fitted_width: fw,
                    fitted_height: fh,
                }
            }
        }
    }

    /// A point of the input tensor in frame pixels.
    #[inline]
    pub fn to_frame(&self, x: f32, y: f32) -> (f32, f32) {
        (x / self.scale_x, y / self.scale_y)
    }
}

/// Builds input tensors for one model; keeps its scratch buffers between frames.
#[derive(Debug)]
pub struct Preprocessor {
    spec: DetectionSpec,
    resizer: Resizer,
    resized: Vec<u8>,
    /// Per tensor plane, the input value of each 8-bit pixel value.
    lut: [[f32; 256]; 3],
    /// Per tensor plane, the value of the letterbox padding.
    pad: [f32; 3],
    /// Per tensor plane, the RGB channel it takes.
    source_channel: [usize; 3],
}

impl Preprocessor {
    pub fn new(spec: &DetectionSpec) -> Self {
        let mut lut = [[0.0f32; 256]; 3];
        let mut pad = [0.0f32; 3];
        for p in 0..3 {
            let norm = |v: f32| (v * spec.scale - spec.mean[p]) / spec.std[p];
            for (v, slot) in lut[p].iter_mut().enumerate() {
                *slot = norm(v as f32);
            }
            pad[p] = norm(spec.pad_value);
        }
        let source_channel = match spec.channel_order {
            ChannelOrder::Rgb => [0, 1, 2],
            ChannelOrder::Bgr => [2, 1, 0],
        };
        Self {
            spec: spec.clone(),
            resizer: Resizer::new(),
            resized: Vec::new(),
            lut,
            pad,
            source_channel,
        }
    }

    /// Writes the input tensor (`3 · input_height · input_width` values, NCHW) of the packed
    /// RGB8 frame `rgb` into `out`, reusing its allocation.
    pub fn run(
        &mut self,
        rgb: &[u8],
        width: u32,
        height: u32,
        out: &mut Vec<f32>,
    ) -> Result<Geometry, FrameError> {
        if width == 0 || height == 0 {
            return Err(FrameError::Empty);
        }
        let expected = width as usize * height as usize * 3;
        if rgb.len() != expected {
            return Err(FrameError::Length { expected, actual: rgb.len() });
        }
        let g = Geometry::fit(&self.spec, width, height);
        let (fw, fh) = (g.fitted_width, g.fitted_height);
        self.resizer.resize_rgb8(
            rgb,
            (width as usize, height as usize),
            (fw, fh),
            &mut self.resized,
        );
        let (iw, ih) = (self.spec.input_width as usize, self.spec.input_height as usize);
        // Every value is written below (image, padding): only a size change touches it.
        out.resize(3 * iw * ih, 0.0);
        for (p, plane) in out.chunks_exact_mut(iw * ih).enumerate() {
            let lut = &self.lut[p];
            let ch = self.source_channel[p];
            for (y, row) in plane.chunks_exact_mut(iw).enumerate() {
                if y >= fh {
                    row.fill(self.pad[p]);
                    continue;
                }
                let src = &self.resized[y * fw * 3..][..fw * 3];
                let (image, padding) = row.split_at_mut(fw);
                for (v, px) in image.iter_mut().zip(src.chunks_exact(3)) {
                    *v = lut[usize::from(px[ch])];
                }
                padding.fill(self.pad[p]);
            }
        }
        Ok(g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Decoder, Layout};

    fn spec(resize: Resize) -> DetectionSpec {
        DetectionSpec {
            decoder: Decoder::Yolox,
            input_width: 8,
            input_height: 8,
            channel_order: ChannelOrder::Bgr,
            layout: Layout::Nchw,
            resize,
            pad_value: 114.0,
            scale: 1.0,
            mean: [0.0; 3],
            std: [1.0; 3],
            score_threshold: 0.5,
            nms_iou: 0.5,
        }
    }

    #[test]
    fn letterbox_keeps_the_aspect_ratio_at_the_top_left_and_maps_back() {
        // A 16×4 frame into 8×8: r = 0.5, fitted 8×2, rows 2.. padded.
        let s = spec(Resize::LetterboxTopLeft);
        let g = Geometry::fit(&s, 16, 4);
        assert_eq!((g.fitted_width, g.fitted_height, g.scale_x, g.scale_y), (8, 2, 0.5, 0.5));
        assert_eq!(g.to_frame(4.0, 1.0), (8.0, 2.0));
        // A tall frame: r = min(8/3, 8/12) = 2/3 → 2×8 (floor of 2.67).
        let g = Geometry::fit(&s, 3, 12);
        assert_eq!((g.fitted_width, g.fitted_height), (2, 8));
        let (x, y) = g.to_frame(2.0, 8.0);
        assert!((x - 3.0).abs() < 1e-5 && (y - 12.0).abs() < 1e-5, "{x} {y}");
        // 768×432 into 416×416: r = 416/768 in f64 and 432·r = 233.99999999999997, which the
        // reference truncates (Python's `int`) to 233.
        let g =
            Geometry::fit(&DetectionSpec { input_width: 416, input_height: 416, ..s }, 768, 432);
        assert_eq!((g.fitted_width, g.fitted_height), (416, 233));

        let st = spec(Resize::Stretch);
        let g = Geometry::fit(&st, 16, 4);
        assert_eq!((g.fitted_width, g.fitted_height, g.scale_x, g.scale_y), (8, 8, 0.5, 2.0));
        assert_eq!(g.to_frame(8.0, 8.0), (16.0, 4.0));
    }

    #[test]
    fn the_tensor_is_planar_in_channel_order_normalised_and_padded() {
        let mut s = spec(Resize::LetterboxTopLeft);
        s.mean = [10.0, 20.0, 30.0];
        s.std = [2.0, 2.0, 2.0];
        // A uniform 16×4 frame of RGB (200, 100, 50): resizing keeps it uniform.
        let frame: Vec<u8> = std::iter::repeat_n([200u8, 100, 50], 64).flatten().collect();
        let mut pre = Preprocessor::new(&s);
        let mut t = Vec::new();
        pre.run(&frame, 16, 4, &mut t).unwrap();
        assert_eq!(t.len(), 3 * 64);
        // BGR: plane 0 is blue.
        let want = [(50.0 - 10.0) / 2.0, (100.0 - 20.0) / 2.0, (200.0 - 30.0) / 2.0];
        let pads = [(114.0 - 10.0) / 2.0, (114.0 - 20.0) / 2.0, (114.0 - 30.0) / 2.0];
        for p in 0..3 {
            let plane = &t[p * 64..][..64];
            assert!(plane[..16].iter().all(|v| *v == want[p]), "plane {p}: {plane:?}");
            assert!(plane[16..].iter().all(|v| *v == pads[p]), "plane {p}: {plane:?}");
        }
        let ptr = t.as_ptr();
        pre.run(&frame, 16, 4, &mut t).unwrap();
        assert_eq!(ptr, t.as_ptr(), "the tensor buffer is reused");
        assert_eq!(
            pre.run(&frame, 16, 5, &mut t),
            Err(FrameError::Length { expected: 240, actual: 192 })
        );
        assert_eq!(pre.run(&frame, 0, 5, &mut t), Err(FrameError::Empty));
    }
}
