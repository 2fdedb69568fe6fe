//! The plotted curves come from the same sweeps as the metrics: their areas are the metrics.
use realnet_metrics::{evaluate, evaluate_with_curves, trapezoid, Map, Scored, AUPRO_FPR_LIMIT};

/// A deterministic set with ties, several regions per image, good images and two defect types.
fn set() -> Vec<Scored> {
    let (w, h) = (24, 16);
    let mut v = Vec::new();
    let mut state = 12345u64;
    let mut rnd = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 33) % 1000) as f32 / 1000.0
    };
    for i in 0..10 {
        let defective = i >= 4;
        let mut mask = vec![false; w * h];
        let mut data: Vec<f32> = (0..w * h)
            .map(|_| (rnd() * 0.6 * 20.0).round() / 20.0)
            .collect();
        if defective {
            for (x0, y0) in [(2 + i, 3), (15, 9)] {
                for y in y0..y0 + 3 {
                    for x in x0..x0 + 4 {
                        mask[y * w + x] = true;
                        data[y * w + x] += 0.3 * rnd();
                    }
                }
            }
        }
        let map = Map::new(w, h, data).unwrap();
        let image_score = if defective {
            0.5 + rnd() * 0.4
        } else {
            rnd() * 0.7
        };
        v.push(Scored {
            defect: if !defective {
                "good"
            } else if i % 2 == 0 {
                "crack"
            } else {
                "hole"
            }
            .into(),
            name: format!("{i}"),
            map,
            mask: defective.then_some(mask),
            image_score,
        });
    }
    v
}

#[test]
fn unthinned_curve_areas_are_the_metrics_and_the_report_is_unchanged() {
    let items = set();
    let (report, curves) = evaluate_with_curves(&items, 1_000_000).unwrap();
    assert_eq!(report, evaluate(&items).unwrap());
    let m = &report.overall;
    let roc = curves.image_roc.unwrap();
    assert!((trapezoid(&roc.points) - m.image_auroc.unwrap()).abs() < 1e-12);
    let proc_ = curves.pixel_roc.unwrap();
    assert_eq!(proc_.points.first(), Some(&(0.0, 0.0)));
    assert_eq!(proc_.points.last(), Some(&(1.0, 1.0)));
    assert!((trapezoid(&proc_.points) - m.pixel_auroc.unwrap()).abs() < 1e-9);
    let pro = curves.pro.unwrap();
    let last = pro.points.last().copied().unwrap();
    assert!((last.0 - AUPRO_FPR_LIMIT).abs() < 1e-15, "{last:?}");
    assert!((trapezoid(&pro.points) / AUPRO_FPR_LIMIT - m.aupro.unwrap()).abs() < 1e-9);
}

#[test]
fn thinned_curves_are_short_monotone_and_close() {
    let items = set();
    let (report, curves) = evaluate_with_curves(&items, 50).unwrap();
    for (c, area, scale) in [
        (
            curves.pixel_roc.unwrap(),
            report.overall.pixel_auroc.unwrap(),
            1.0,
        ),
        (
            curves.pro.unwrap(),
            report.overall.aupro.unwrap(),
            AUPRO_FPR_LIMIT,
        ),
    ] {
        assert!(c.points.len() <= 2 * 50 + 2, "{}", c.points.len());
        for w in c.points.windows(2) {
            assert!(w[1].0 >= w[0].0 && w[1].1 >= w[0].1, "{w:?}");
        }
        // every dropped point lies within 1/50 of the polyline's vertices: the area moves little
        assert!((trapezoid(&c.points) / scale - area).abs() < 0.03);
    }
}

#[test]
fn undefined_metrics_have_no_curves() {
    let items: Vec<Scored> = set().into_iter().filter(|s| s.defect == "good").collect();
    let (_, c) = evaluate_with_curves(&items, 100).unwrap();
    assert_eq!((c.image_roc, c.pixel_roc, c.pro), (None, None, None));
}
