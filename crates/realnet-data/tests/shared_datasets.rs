//! The real datasets in ../shared/data (MVTec AD bottle, Magnetic Tile). Skipped with a note when
//! the shared folder is not there (a clone without it).
use realnet_data::inspect::{inspect, InspectOptions};
use realnet_data::{load_all, Category, LayoutKind};
use std::path::PathBuf;

fn shared(rel: &str) -> Option<PathBuf> {
    let p = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data")).join(rel);
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!("skipped: {} not found", p.display());
        None
    }
}

#[test]
fn mvtec_bottle() {
    let Some(dir) = shared("mvtec_ad/bottle") else {
        return;
    };
    let cat = Category::open(&dir).unwrap();
    assert_eq!(cat.layout, LayoutKind::Mvtec);
    assert_eq!(cat.name, "bottle");
    assert_eq!(cat.train.len(), 209);
    let counts = cat.test_counts();
    let want: Vec<(&str, usize)> = vec![
        ("broken_large", 20),
        ("broken_small", 22),
        ("contamination", 21),
        ("good", 20),
    ];
    assert_eq!(
        counts
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect::<Vec<_>>(),
        want
    );
    assert_eq!(cat.test.iter().filter(|s| s.mask.is_some()).count(), 63);
    // masks pair with their own image
    for s in cat.test.iter().filter(|s| s.is_anomalous()) {
        let m = s.mask.as_ref().unwrap();
        assert_eq!(
            m.file_name().unwrap().to_string_lossy(),
            format!("{}_mask.png", s.stem())
        );
        assert!(m.parent().unwrap().ends_with(&s.defect));
    }
    // sorted by name
    assert!(cat.train.windows(2).all(|w| w[0].path < w[1].path));

    let r = inspect(&cat, &InspectOptions::default());
    assert!(r.problems.is_empty(), "{:#?}", r.problems);
    assert_eq!(r.images.readable, 292);
    assert_eq!(r.images.distinct_sizes, 1);
    assert_eq!((r.images.min_width, r.images.max_height), (256, 256));
    assert_eq!(r.images.kinds.keys().collect::<Vec<_>>(), ["png rgb8"]);
    assert_eq!(
        (r.masks.expected, r.masks.found, r.masks.missing),
        (63, 63, 0)
    );

    // Loading the test split: images and masks come out at the network size; every defective
    // image's mask has anomalous pixels.
    let loaded = load_all(&cat.test, Some((256, 256)));
    for (r, s) in loaded.iter().zip(&cat.test) {
        let l = r.as_ref().unwrap();
        assert_eq!(l.image.dimensions(), (256, 256));
        if s.is_anomalous() {
            assert!(l.mask.as_ref().unwrap().as_raw().contains(&255));
        }
    }
}

#[test]
fn magnetic_tile() {
    let Some(dir) = shared("magnetic_tile") else {
        return;
    };
    let cat = Category::open(&dir).unwrap();
    assert_eq!(cat.train.len(), 762);
    let counts = cat.test_counts();
    assert_eq!(counts["good"], 190);
    assert_eq!(counts.len(), 6);
    assert_eq!(cat.test.iter().filter(|s| s.is_anomalous()).count(), 388);
    assert_eq!(
        [
            counts["blowhole"],
            counts["break"],
            counts["crack"],
            counts["fray"],
            counts["uneven"]
        ],
        [115, 85, 57, 32, 99]
    );
    // Headers are enough for sizes and kinds; masks are still decoded and checked.
    let r = inspect(
        &cat,
        &InspectOptions {
            full_decode: false,
            ..Default::default()
        },
    );
    assert!(
        r.problems.is_empty(),
        "{:#?}",
        &r.problems[..r.problems.len().min(5)]
    );
    assert_eq!(r.masks.found, 388);
    assert_eq!(r.images.kinds.keys().collect::<Vec<_>>(), ["jpeg gray8"]);
    assert_eq!(r.images.readable, 762 + 190 + 388);
    assert!(r.images.distinct_sizes > 10);
    assert_eq!((r.images.min_width, r.images.max_width), (103, 632));
    assert_eq!((r.images.min_height, r.images.max_height), (222, 403));
}
