//! The page is self-contained and complete: one SVG per plot, every image a `data:` URI, no URL, and
//! every miss at the threshold in the gallery.
use realnet_report::sample::sample_input;
use realnet_report::{render, Gallery};

fn count(h: &str, needle: &str) -> usize {
    h.matches(needle).count()
}

/// The `<img>` tags' `src` values.
fn img_sources(h: &str) -> Vec<&str> {
    h.split("<img ")
        .skip(1)
        .filter_map(|t| t.split("src=\"").nth(1))
        .filter_map(|t| t.split('"').next())
        .collect()
}

#[test]
fn one_svg_per_plot_and_a_colour_bar() {
    let h = render(&sample_input(10, 12)).unwrap();
    assert!(h.starts_with("<!DOCTYPE html>"));
    for id in ["roc", "pro", "histogram"] {
        let fig = h
            .split(&format!("<figure class=\"plot\" id=\"{id}\">"))
            .nth(1)
            .unwrap_or_else(|| panic!("no {id} figure"));
        let fig = fig.split("</figure>").next().unwrap();
        assert_eq!(count(fig, "<svg"), 1, "{id}");
        assert_eq!(count(fig, "</svg>"), 1, "{id}");
    }
    assert_eq!(count(&h, "<figure class=\"plot\""), 3);
    // 3 plots + the colour bar, nothing else
    assert_eq!(count(&h, "<svg"), 4);
    assert_eq!(count(&h, "class=\"colourbar\""), 1);
    // the histogram marks the threshold
    assert!(h.contains("threshold 0.5000"), "threshold label");
}

#[test]
fn self_contained_no_urls_no_scripts() {
    let h = render(&sample_input(10, 12)).unwrap();
    assert!(!h.contains("http://") && !h.contains("https://"));
    assert!(!h.contains("<script") && !h.contains("<link") && !h.contains("@import"));
    let srcs = img_sources(&h);
    assert!(!srcs.is_empty());
    for s in &srcs {
        assert!(
            s.starts_with("data:image/png;base64,"),
            "{}",
            &s[..s.len().min(40)]
        );
    }
    // every src= and href= in the page is a data: URI or an in-page anchor
    for attr in ["src=\"", "href=\""] {
        for v in h.split(attr).skip(1) {
            assert!(
                v.starts_with("data:") || v.starts_with('#'),
                "{attr}{}",
                &v[..v.len().min(30)]
            );
        }
    }
}

#[test]
fn gallery_has_every_miss_with_both_pictures() {
    let input = sample_input(15, 16);
    let g = Gallery::pick(&input.images, input.image_threshold, input.gallery_size);
    let t = input.image_threshold;
    let fns: Vec<usize> = (0..input.images.len())
        .filter(|&i| input.images[i].anomalous && input.images[i].score < t)
        .collect();
    let fps: Vec<usize> = (0..input.images.len())
        .filter(|&i| !input.images[i].anomalous && input.images[i].score >= t)
        .collect();
    assert!(
        !fns.is_empty() && !fps.is_empty(),
        "the sample must have misses of both kinds"
    );
    let mut got = g.false_negatives.clone();
    got.sort();
    assert_eq!(got, fns);
    let mut got = g.false_positives.clone();
    got.sort();
    assert_eq!(got, fps);

    let h = render(&input).unwrap();
    for (section, want) in [("false-negatives", &fns), ("false-positives", &fps)] {
        let part = h
            .split(&format!("id=\"gallery-{section}\">"))
            .nth(1)
            .unwrap()
            .split("<h3")
            .next()
            .unwrap();
        assert_eq!(
            count(part, "<div class=\"card miss\""),
            want.len(),
            "{section}"
        );
        for &i in want.iter() {
            let name = &input.images[i].name;
            assert!(
                part.contains(&format!("data-name=\"{name}\"")),
                "{section}: {name}"
            );
        }
        // two pictures per card
        assert_eq!(img_sources(part).len(), 2 * want.len());
    }
    // most / least anomalous: gallery_size each
    for section in ["most", "least"] {
        let part = h
            .split(&format!("id=\"gallery-{section}\">"))
            .nth(1)
            .unwrap()
            .split("</div>\n<h")
            .next()
            .unwrap();
        assert_eq!(
            count(part, "<div class=\"card"),
            input.gallery_size,
            "{section}"
        );
    }
}

#[test]
fn metrics_and_metadata_are_shown_and_escaped() {
    let mut input = sample_input(6, 6);
    input.metadata.push(("note".into(), "<b>&\"x\"".into()));
    let h = render(&input).unwrap();
    assert!(h.contains("&lt;b&gt;&amp;&quot;x&quot;"));
    assert!(!h.contains("<b>&\"x\""));
    for d in input.metrics.per_defect.keys() {
        assert!(h.contains(&format!("<td>{d}</td>")), "{d}");
    }
    let auroc = input.metrics.overall.image_auroc.unwrap();
    assert!(h.contains(&format!("{auroc:.4}")));
}

#[test]
fn degenerate_sets_render() {
    // only normal images: no curves, no misses of the anomalous kind, page still complete
    let mut input = sample_input(6, 0);
    input.curves = Default::default();
    let h = render(&input).unwrap();
    assert!(h.contains("ROC n/a") && h.contains("PRO n/a"));
    input.images.clear();
    input.pictures.clear();
    let h = render(&input).unwrap();
    assert!(h.contains("no images"));
}
