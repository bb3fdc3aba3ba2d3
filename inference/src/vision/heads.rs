//! Geometry of the detector heads: strides and the SSD anchors. A leaf: the manifest checks
//! output shapes with it and the decoders read boxes with it, and it knows neither.

/// Strides of the YOLOX and YuNet heads.
pub const STRIDES: [usize; 3] = [8, 16, 32];

/// AIZOO's SSD anchors: per level, feature map size and the two anchor sizes (fractions of the
/// image); the ratios (w/h) are shared. Per cell, 4 anchors: (size 0, ratio 0),
/// (size 1, ratio 0), (size 0, ratio 1), (size 0, ratio 2).
const AIZOO_LEVELS: [(usize, [f64; 2]); 5] = [
    (33, [0.04, 0.056]),
    (17, [0.08, 0.11]),
    (9, [0.16, 0.22]),
    (5, [0.32, 0.45]),
    (3, [0.64, 0.72]),
];
const AIZOO_RATIOS: [f64; 3] = [1.0, 0.62, 0.42];
pub const AIZOO_VARIANCES: [f32; 4] = [0.1, 0.1, 0.2, 0.2];

/// AIZOO's anchors as `[cx, cy, w, h]`, fractions of the image, cell-major (rows, then
/// columns, then the 4 anchors of a cell), levels in order.
pub fn aizoo_anchors() -> Vec<[f32; 4]> {
    let mut out = Vec::with_capacity(aizoo_anchor_count());
    for (n, sizes) in AIZOO_LEVELS {
        let shapes = [
            (sizes[0], AIZOO_RATIOS[0]),
            (sizes[1], AIZOO_RATIOS[0]),
            (sizes[0], AIZOO_RATIOS[1]),
            (sizes[0], AIZOO_RATIOS[2]),
        ];
        for y in 0..n {
            for x in 0..n {
                let cx = (x as f64 + 0.5) / n as f64;
                let cy = (y as f64 + 0.5) / n as f64;
                for (s, r) in shapes {
                    let w = s * r.sqrt();
                    let h = s / r.sqrt();
                    out.push([cx as f32, cy as f32, w as f32, h as f32]);
                }
            }
        }
    }
    out
}

pub fn aizoo_anchor_count() -> usize {
    AIZOO_LEVELS.iter().map(|(n, _)| n * n * 4).sum()
}

/// Cells of the stride-8/16/32 grids of a `w` × `h` input, in head order.
pub fn grid_cells(w: usize, h: usize) -> usize {
    STRIDES.iter().map(|s| (w / s) * (h / s)).sum()
}
