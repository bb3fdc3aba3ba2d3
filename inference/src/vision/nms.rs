//! Class-wise non-maximum suppression.

use super::decode::Candidate;

/// Intersection over union of two `[x1, y1, x2, y2]` boxes; 0 when either is empty.
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let area = |r: &[f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

/// Sorts `c` by score, best first, and keeps a candidate only if no better one of its class
/// overlaps it by more than `iou_threshold`. In place, no allocation.
pub fn nms_class_wise(c: &mut Vec<Candidate>, iou_threshold: f32) {
    c.sort_unstable_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept = 0;
    for i in 0..c.len() {
        let cand = c[i];
        let suppressed = c[..kept]
            .iter()
            .any(|k| k.class == cand.class && iou(&k.bbox, &cand.bbox) > iou_threshold);
        if !suppressed {
            c[kept] = cand;
            kept += 1;
        }
    }
    c.truncate(kept);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(class: usize, score: f32, bbox: [f32; 4]) -> Candidate {
        Candidate { class, score, bbox, landmarks: None }
    }

    #[test]
    fn iou_of_known_boxes() {
        let a = [0.0, 0.0, 10.0, 10.0];
        assert_eq!(iou(&a, &a), 1.0);
        assert_eq!(iou(&a, &[5.0, 0.0, 15.0, 10.0]), 50.0 / 150.0);
        assert_eq!(iou(&a, &[20.0, 20.0, 30.0, 30.0]), 0.0);
        assert_eq!(iou(&a, &[3.0, 3.0, 3.0, 8.0]), 0.0);
    }

    #[test]
    fn suppresses_overlaps_within_a_class_only_and_orders_by_score() {
        let mut c = vec![
            cand(0, 0.6, [1.0, 0.0, 11.0, 10.0]), // IoU 0.82 with the 0.9 box: suppressed
            cand(1, 0.7, [0.0, 0.0, 10.0, 10.0]), // other class: kept
            cand(0, 0.9, [0.0, 0.0, 10.0, 10.0]),
            cand(0, 0.5, [6.0, 0.0, 16.0, 10.0]), // IoU 0.25 with the 0.9 box: kept
            cand(0, 0.8, [0.0, 0.5, 10.0, 10.5]), // IoU 0.90: suppressed
        ];
        nms_class_wise(&mut c, 0.45);
        let got: Vec<(usize, f32)> = c.iter().map(|c| (c.class, c.score)).collect();
        assert_eq!(got, [(0, 0.9), (1, 0.7), (0, 0.5)]);
        // At the threshold itself a box is kept (suppression needs more than it).
        let mut c =
            vec![cand(0, 0.9, [0.0, 0.0, 10.0, 10.0]), cand(0, 0.8, [5.0, 0.0, 15.0, 10.0])];
        nms_class_wise(&mut c, 1.0 / 3.0);
        assert_eq!(c.len(), 2);
    }
}
