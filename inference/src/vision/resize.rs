//! Bilinear resizing of packed RGB8 images, bit for bit as Pillow's `Image.resize(size,
//! Image.BILINEAR)` (`libImaging/Resample.c`), because the detectors' reference outputs were
//! computed with it.
//!
//! Pillow's "bilinear" is a separable convolution with a triangle filter whose support grows
//! with the downscale factor (so a 4× reduction averages ~8 source pixels per axis instead of
//! sampling 2), with weights in 22-bit fixed point, a horizontal pass into an 8-bit image and
//! then a vertical pass. An axis whose size does not change is not filtered.

/// Fractional bits of the fixed-point weights (Pillow's `PRECISION_BITS`: 32 − 8 − 2, so a sum
/// of 8-bit pixels times weights fits an `i32`).
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Weights of one axis: for output index `i`, `count[i]` source pixels from `first[i]`, with
/// weights `weights[i * ksize..][..count[i]]`.
#[derive(Debug, Default)]
struct AxisCoeffs {
    in_size: usize,
    out_size: usize,
    ksize: usize,
    first: Vec<usize>,
    count: Vec<usize>,
    weights: Vec<i32>,
    /// The same taps as exactly `ksize` source pixels per output (when `in_size >= ksize`):
    /// the window moved inside the line where it would cross an edge, weight 0 for pixels
    /// that are not taps, so the sums are the same to the bit.
    window_first: Vec<usize>,
    window_weights: Vec<i32>,
}

impl AxisCoeffs {
    /// Recomputes the weights unless they are already those of `in_size → out_size`.
    fn prepare(&mut self, in_size: usize, out_size: usize) {
        if self.in_size == in_size && self.out_size == out_size && !self.first.is_empty() {
            return;
        }
        let scale = in_size as f64 / out_size as f64;
        let filterscale = scale.max(1.0);
        // The triangle filter has support 1; Pillow widens it by the downscale factor.
        let support = filterscale;
        let ss = 1.0 / filterscale;
        let ksize = support.ceil() as usize * 2 + 1;
        self.in_size = in_size;
        self.out_size = out_size;
        self.ksize = ksize;
        self.first.clear();
        self.count.clear();
        self.weights.clear();
        self.weights.resize(out_size * ksize, 0);
        let mut w = vec![0.0f64; ksize];
        for i in 0..out_size {
            let center = (i as f64 + 0.5) * scale;
            // `(int)` in C truncates towards zero, as `as` does.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let n = xmax.saturating_sub(xmin).min(ksize);
            let mut total = 0.0;
            for (x, wx) in w.iter_mut().enumerate().take(n) {
                let t = ((x + xmin) as f64 - center + 0.5) * ss;
                *wx = (1.0 - t.abs()).max(0.0);
                total += *wx;
            }
            let row = &mut self.weights[i * ksize..][..ksize];
            for (k, wx) in row.iter_mut().zip(&w).take(n) {
                let v = if total != 0.0 { wx / total } else { *wx };
                let fixed = v * f64::from(1u32 << PRECISION_BITS);
                *k = if fixed < 0.0 { (fixed - 0.5) as i32 } else { (fixed + 0.5) as i32 };
            }
            self.first.push(xmin);
            self.count.push(n);
        }
        self.window_first.clear();
        self.window_weights.clear();
        if in_size >= ksize {
            self.window_weights.resize(out_size * ksize, 0);
            for i in 0..out_size {
                let (x0, n) = (self.first[i], self.count[i]);
                let start = x0.min(in_size - ksize);
                self.window_weights[i * ksize + x0 - start..][..n]
                    .copy_from_slice(&self.weights[i * ksize..][..n]);
                self.window_first.push(start);
            }
        }
    }

    /// The weights of output index `i` and the first source index they apply to.
    fn taps(&self, i: usize) -> (usize, &[i32]) {
        (self.first[i], &self.weights[i * self.ksize..][..self.count[i]])
    }
}

#[inline]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Writes one RGB pixel's sums, shifted back to 8 bits.
#[inline]
fn store(px: &mut [u8], acc: [i32; 3]) {
    px[0] = clip8(acc[0]);
    px[1] = clip8(acc[1]);
    px[2] = clip8(acc[2]);
}

/// Rounding term added before the final shift.
const HALF: i32 = 1 << (PRECISION_BITS - 1);

/// A resizer that keeps its weights and intermediate image between calls, so resizing frames of
/// one size allocates nothing after the first.
#[derive(Debug, Default)]
pub struct Resizer {
    horizontal: AxisCoeffs,
    vertical: AxisCoeffs,
    /// The horizontal pass's output: `out_w` × (rows the vertical pass reads), RGB8.
    temp: Vec<u8>,
    /// One output row's sums in the vertical pass.
    acc: Vec<i32>,
}

impl Resizer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Resizes the packed RGB8 image `src` (`src_w` × `src_h`) to `dst_w` × `dst_h` into `dst`
    /// (cleared and refilled). Sizes must be non-zero and `src` exactly `src_w · src_h · 3`
    /// bytes; the caller checks.
    pub fn resize_rgb8(
        &mut self,
        src: &[u8],
        (src_w, src_h): (usize, usize),
        (dst_w, dst_h): (usize, usize),
        dst: &mut Vec<u8>,
    ) {
        debug_assert_eq!(src.len(), src_w * src_h * 3);
        // Every byte is written below: only a size change touches the allocation.
        dst.resize(dst_w * dst_h * 3, 0);
        let need_h = src_w != dst_w;
        let need_v = src_h != dst_h;
        if !need_h && !need_v {
            dst.copy_from_slice(src);
            return;
        }
        if !need_v {
            self.horizontal.prepare(src_w, dst_w);
            horizontal_pass(&self.horizontal, src, src_w, 0, dst_h, dst_w, dst);
            return;
        }
        self.vertical.prepare(src_h, dst_h);
        if !need_h {
            vertical_pass(&self.vertical, src, dst_w, 0, &mut self.acc, dst);
            return;
        }
        // Only the source rows the vertical pass reads go through the horizontal pass.
        let first_row = self.vertical.first[0];
        let last_row = self.vertical.first[dst_h - 1] + self.vertical.count[dst_h - 1];
        let rows = last_row - first_row;
        self.horizontal.prepare(src_w, dst_w);
        self.temp.resize(dst_w * rows * 3, 0);
        horizontal_pass(&self.horizontal, src, src_w, first_row, rows, dst_w, &mut self.temp);
        vertical_pass(&self.vertical, &self.temp, dst_w, first_row, &mut self.acc, dst);
    }
}

/// Filters `rows` rows of `src` from `first_row` along x into `out` (`out_w` wide).
fn horizontal_pass(
    c: &AxisCoeffs,
    src: &[u8],
    src_w: usize,
    first_row: usize,
    rows: usize,
    out_w: usize,
    out: &mut [u8],
) {
    // A fixed tap count lets the compiler unroll the inner loop (the common downscale factors
    // up to 3×); other factors take the general loop.
    match c.ksize {
        3 => horizontal_fixed::<3>(c, src, src_w, first_row, rows, out_w, out),
        5 => horizontal_fixed::<5>(c, src, src_w, first_row, rows, out_w, out),
        7 => horizontal_fixed::<7>(c, src, src_w, first_row, rows, out_w, out),
        _ => horizontal_general(c, src, src_w, first_row, rows, out_w, out),
    }
}

fn horizontal_general(
    c: &AxisCoeffs,
    src: &[u8],
    src_w: usize,
    first_row: usize,
    rows: usize,
    out_w: usize,
    out: &mut [u8],
) {
    for y in 0..rows {
        let line = &src[(first_row + y) * src_w * 3..][..src_w * 3];
        let out_line = &mut out[y * out_w * 3..][..out_w * 3];
        for (x, px) in out_line.chunks_exact_mut(3).enumerate() {
            let (x0, k) = c.taps(x);
            let mut acc = [HALF; 3];
            for (p, &w) in line[x0 * 3..][..k.len() * 3].chunks_exact(3).zip(k) {
                acc[0] += i32::from(p[0]) * w;
                acc[1] += i32::from(p[1]) * w;
                acc[2] += i32::from(p[2]) * w;
            }
            store(px, acc);
        }
    }
}

/// As [`horizontal_general`] with every output pixel reading exactly `K` source pixels (the
/// coefficients' windows).
fn horizontal_fixed<const K: usize>(
    c: &AxisCoeffs,
    src: &[u8],
    src_w: usize,
    first_row: usize,
    rows: usize,
    out_w: usize,
    out: &mut [u8],
) {
    if c.window_first.len() != out_w {
        return horizontal_general(c, src, src_w, first_row, rows, out_w, out);
    }
    for y in 0..rows {
        let line = &src[(first_row + y) * src_w * 3..][..src_w * 3];
        let out_line = &mut out[y * out_w * 3..][..out_w * 3];
        let windows = c.window_first.iter().zip(c.window_weights.chunks_exact(K));
        for (px, (&start, w)) in out_line.chunks_exact_mut(3).zip(windows) {
            let p = &line[start * 3..][..3 * K];
            let w: &[i32; K] = w.try_into().expect("K weights");
            let mut acc = [HALF; 3];
            for j in 0..K {
                acc[0] += i32::from(p[3 * j]) * w[j];
                acc[1] += i32::from(p[3 * j + 1]) * w[j];
                acc[2] += i32::from(p[3 * j + 2]) * w[j];
            }
            store(px, acc);
        }
    }
}

/// Filters `src` (`width` wide, whose row 0 is source row `row_offset`) along y into `out`,
/// a whole row at a time (`acc` is the row's accumulator) so the inner loop runs over
/// contiguous bytes.
fn vertical_pass(
    c: &AxisCoeffs,
    src: &[u8],
    width: usize,
    row_offset: usize,
    acc: &mut Vec<i32>,
    out: &mut [u8],
) {
    let stride = width * 3;
    for (y, out_line) in out.chunks_exact_mut(stride).enumerate() {
        let (y0, k) = c.taps(y);
        let y0 = y0 - row_offset;
        acc.clear();
        acc.resize(stride, HALF);
        for (j, &w) in k.iter().enumerate() {
            let line = &src[(y0 + j) * stride..][..stride];
            for (a, &p) in acc.iter_mut().zip(line) {
                *a += i32::from(p) * w;
            }
        }
        for (v, &a) in out_line.iter_mut().zip(acc.iter()) {
            *v = clip8(a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 7×5 test pattern; the expected images below are Pillow 13's
    /// `Image.fromarray(pattern).resize(size, Image.BILINEAR)`, hex of the RGB bytes.
    fn pattern() -> Vec<u8> {
        let mut v = Vec::new();
        for y in 0..5usize {
            for x in 0..7usize {
                for c in 0..3usize {
                    v.push(((x * 37 + y * 91 + c * 53 + x * y * 11) % 256) as u8);
                }
            }
        }
        v
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn fixed_tap_windows_sum_as_the_general_loop() {
        let (w, h) = (480usize, 6usize);
        let src: Vec<u8> = (0..w * h * 3).map(|i| (i * 131 % 251) as u8).collect();
        for out_w in [352, 416, 200, 160, 97, 640, 480 * 3] {
            let mut c = AxisCoeffs::default();
            c.prepare(w, out_w);
            let (mut general, mut fixed) = (vec![0u8; out_w * h * 3], vec![0u8; out_w * h * 3]);
            horizontal_general(&c, &src, w, 0, h, out_w, &mut general);
            horizontal_pass(&c, &src, w, 0, h, out_w, &mut fixed);
            assert_eq!(general, fixed, "480 → {out_w} (ksize {})", c.ksize);
        }
    }

    #[test]
    fn matches_pillow_bilinear_when_shrinking_enlarging_and_mixed() {
        let cases: [((usize, usize), &str); 4] = [
            ((3, 2), "6c888f87848c8382837591757f7c716a8678"),
            (
                (11, 9),
                "00356a11467b285d924075aa578cc16fa4d987bcf19ed3c2b6eb37cd7737de13481e538831669b4a7f\
                 ad659a917e94939878ad7c92c777acb291c660aa836abd477c5186bb669bd084b9d9a2d766bfa145dd\
                 2f646b4d82356a975388a37196be869fd483b87c9c9d94b380a88ca2708e906ab0578c787966657b5e\
                 8755806b6ca14f84b9b6eb20d1913bdf2b606251864176ab679cd18dc254b2a11cd82442723267184d\
                 825a8f5378797097648c788e5c82835eac53887b7d697086699a689385866e6fa44b1b50853c719966\
                 9ba282b73ea7892dd4265b7154764479995f94c789be78aadf304e83b871a68d92c759578c55596f6e\
                 8b6ba0869c65699e572e638950858b73a8886ca1d691c686ade22e3e73622b60955f94c993c85a80b5\
                 301146642d62975287bc",
            ),
            (
                (4, 8),
                "13487d4d82b791c6c8cb7a413d72a27f948f7b91a99d877e79a7c9b9a86063517e6391c5ae986d807c\
                 878a855f6e57849b845978737f8d89627c65683f6d8e9f8d466e5c898ebc73659a8c7085637187715c\
                 91858abf87487d7e76ab5b346992",
            ),
            (
                (7, 3),
                "275c915186bb7aaf77a46ba06095ca8abf62b4568b7db259b85f94659a5da06398699e45a44b805186\
                 82457aaf91c6694b8048985f9476ab4e30659a7cb179",
            ),
        ];
        let src = pattern();
        let mut r = Resizer::new();
        let mut out = Vec::new();
        for (size, want) in cases {
            r.resize_rgb8(&src, (7, 5), size, &mut out);
            assert_eq!(hex(&out), want, "{size:?}");
        }
        // Same size is a copy.
        r.resize_rgb8(&src, (7, 5), (7, 5), &mut out);
        assert_eq!(out, src);
    }
}
