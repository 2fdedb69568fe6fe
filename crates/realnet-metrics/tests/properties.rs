//! Properties of `evaluate` on hand-made sets: separation, reversal, ties, degenerate sets, errors.
use realnet_metrics::{evaluate, ImageScore, Map, MetricsError, Scored};

fn item(defect: &str, name: &str, w: usize, map: Vec<f32>, mask: Option<Vec<bool>>) -> Scored {
    let h = map.len() / w;
    let map = Map::new(w, h, map).unwrap();
    let image_score = ImageScore::Max.apply(&map);
    Scored {
        defect: defect.into(),
        name: name.into(),
        map,
        mask,
        image_score,
    }
}

/// 4 good images (noise in [0, 0.5)), 4 defective ones with a 3×3 square region scored `inside`.
fn set(inside: f32, outside_defect: f32) -> Vec<Scored> {
    let (w, h) = (8, 6);
    let mut v = Vec::new();
    for i in 0..4 {
        let map = (0..w * h)
            .map(|p| ((p * 37 + i * 11) % 50) as f32 / 100.0)
            .collect();
        v.push(item("good", &format!("good/{i}"), w, map, None));
    }
    for i in 0..4 {
        let mut mask = vec![false; w * h];
        let mut map = vec![outside_defect; w * h];
        for y in 1..4 {
            for x in 2 + i..5 + i {
                mask[y * w + x] = true;
                map[y * w + x] = inside;
            }
        }
        v.push(item(
            if i < 2 { "crack" } else { "hole" },
            &format!("d/{i}"),
            w,
            map,
            Some(mask),
        ));
    }
    v
}

#[test]
fn perfect_separation_is_one() {
    let r = evaluate(&set(0.9, 0.0)).unwrap();
    for m in std::iter::once(&r.overall).chain(r.per_defect.values()) {
        assert_eq!(m.image_auroc, Some(1.0));
        assert_eq!(m.pixel_auroc, Some(1.0));
        assert_eq!(m.pixel_ap, Some(1.0));
        assert_eq!(m.aupro, Some(1.0));
        assert_eq!(m.image_f1_max, Some(1.0));
        assert_eq!(m.image_f1_threshold, Some(0.9f32 as f64));
    }
    assert_eq!((r.overall.n_images, r.overall.n_anomalous), (8, 4));
    assert_eq!(
        (
            r.per_defect["crack"].n_images,
            r.per_defect["crack"].n_anomalous
        ),
        (6, 2)
    );
}

#[test]
fn reversed_is_zero_not_flipped() {
    // defect pixels score below every other pixel; defect images score below every good image
    let mut items = set(-1.0, -0.5);
    for it in &mut items {
        it.image_score = if it.is_anomalous() { -1.0 } else { 1.0 };
    }
    let r = evaluate(&items).unwrap();
    assert_eq!(r.overall.image_auroc, Some(0.0));
    assert_eq!(r.overall.pixel_auroc, Some(0.0));
    assert_eq!(r.overall.aupro, Some(0.0));
    // the best F1 is then "everything anomalous": 2·4 / (8 + 4)
    assert!((r.overall.image_f1_max.unwrap() - 8.0 / 12.0).abs() < 1e-12);
    assert_eq!(r.overall.image_f1_threshold, Some(-1.0));
}

#[test]
fn all_tied_is_half() {
    let mut items = set(0.25, 0.25);
    for it in &mut items {
        it.map.data.fill(0.25);
        it.image_score = 0.25;
    }
    let r = evaluate(&items).unwrap();
    assert_eq!(r.overall.image_auroc, Some(0.5));
    assert_eq!(r.overall.pixel_auroc, Some(0.5));
    // one threshold: precision = positive fraction
    let frac = 36.0 / (8.0 * 48.0);
    assert!((r.overall.pixel_ap.unwrap() - frac).abs() < 1e-15);
    // PRO = FPR along the straight jump (0,0)→(1,1): area 0.3²/2, normalised 0.15
    assert!((r.overall.aupro.unwrap() - 0.15).abs() < 1e-12);
}

#[test]
fn degenerate_sets_give_none_with_notes_and_null_in_json() {
    let goods: Vec<Scored> = set(0.9, 0.0)
        .into_iter()
        .filter(|i| i.defect == "good")
        .collect();
    let r = evaluate(&goods).unwrap();
    let m = &r.overall;
    assert_eq!(
        (
            m.image_auroc,
            m.pixel_auroc,
            m.aupro,
            m.pixel_ap,
            m.image_f1_max
        ),
        (None, None, None, None, None)
    );
    assert!(r.per_defect.is_empty());
    assert!(r
        .notes()
        .iter()
        .any(|n| n.contains("image AUROC undefined")));
    let json = serde_json::to_string(&r).unwrap();
    assert!(
        json.contains("\"image_auroc\":null") && !json.contains("NaN"),
        "{json}"
    );

    // all images anomalous: image AUROC undefined, pixel metrics still defined
    let bad: Vec<Scored> = set(0.9, 0.0)
        .into_iter()
        .filter(|i| i.defect != "good")
        .collect();
    let r = evaluate(&bad).unwrap();
    assert_eq!(r.overall.image_auroc, None);
    assert_eq!(r.overall.pixel_auroc, Some(1.0));
    assert_eq!(r.overall.image_f1_max, Some(1.0));
}

#[test]
fn sizes_may_differ_between_items() {
    let mut items = set(0.9, 0.0);
    items.push(item("good", "big", 3, vec![0.1; 30], None));
    items.push(item(
        "crack",
        "odd",
        5,
        vec![0.0, 0.95, 0.0, 0.0, 0.0],
        Some(vec![false, true, false, false, false]),
    ));
    let r = evaluate(&items).unwrap();
    assert_eq!(r.overall.pixel_auroc, Some(1.0));
    assert_eq!(r.per_defect["crack"].n_images, 4 + 2 + 2);
}

#[test]
fn errors_name_the_item() {
    assert!(matches!(evaluate(&[]), Err(MetricsError::Empty)));
    let mut items = set(0.9, 0.0);
    items[5].mask = Some(vec![false; 3]);
    let e = evaluate(&items).unwrap_err().to_string();
    assert!(e.contains("d/1") && e.contains("mask has 3 pixels"), "{e}");
    let mut items = set(0.9, 0.0);
    items[2].map.data[7] = f32::NAN;
    let e = evaluate(&items).unwrap_err().to_string();
    assert!(e.contains("good/2") && e.contains("not finite"), "{e}");
    let mut items = set(0.9, 0.0);
    items[0].image_score = f32::INFINITY;
    assert!(matches!(
        evaluate(&items),
        Err(MetricsError::NonFinite { .. })
    ));
}

#[test]
fn per_defect_with_a_region_in_a_good_image_equals_the_subset() {
    let mut items = set(0.7, 0.2);
    // a "good" image whose mask has a region (it then counts as anomalous everywhere), and ties between
    // good negatives and defect pixels
    let mut mask = vec![false; 48];
    mask[9] = true;
    mask[10] = true;
    items[1].mask = Some(mask);
    items[1].map.data[9] = 0.7;
    items[0].map.data[3] = 0.7;
    items[2].map.data.fill(0.2);
    let r = evaluate(&items).unwrap();
    for (d, m) in &r.per_defect {
        let sub: Vec<Scored> = items
            .iter()
            .filter(|i| i.defect == *d || i.defect == "good")
            .cloned()
            .collect();
        let alone = evaluate(&sub).unwrap().overall;
        let pairs = [
            (m.image_auroc, alone.image_auroc),
            (m.pixel_auroc, alone.pixel_auroc),
            (m.aupro, alone.aupro),
            (m.pixel_ap, alone.pixel_ap),
            (m.image_f1_max, alone.image_f1_max),
        ];
        for (a, b) in pairs {
            assert!(
                (a.unwrap() - b.unwrap()).abs() < 1e-12,
                "{d}: {a:?} vs {b:?}"
            );
        }
        assert_eq!(
            (m.n_images, m.n_anomalous),
            (alone.n_images, alone.n_anomalous)
        );
    }
}
