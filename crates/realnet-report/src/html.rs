//! The HTML page: inline CSS, inline SVG, `data:` images, no scripts, no external references.
use crate::overlay::{ANCHORS, GT_OUTLINE, PRED_OUTLINE};
use crate::{plots, Gallery, ImageEntry, Metrics, Picture, ReportError, ReportInput};
use base64::Engine;
use std::fmt::Write;

/// Escapes text for HTML element content and double-quoted attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn data_uri(png: &[u8]) -> String {
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(png)
    )
}

fn num(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_string(), |v| format!("{v:.4}"))
}

fn rgb(c: [u8; 3]) -> String {
    format!("rgb({},{},{})", c[0], c[1], c[2])
}

const CSS: &str = r#"
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:24px;color:#222;background:#fff}
h1{font-size:1.6em;margin:0 0 4px}h2{margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{margin:20px 0 8px}nav a{margin-right:14px}
table{border-collapse:collapse;margin:8px 0}th,td{padding:3px 10px;border-bottom:1px solid #e4e4e4;text-align:right}
th:first-child,td:first-child{text-align:left}thead th{background:#f4f4f4}
table.meta td{text-align:left}table.meta td:first-child{color:#555}
tr.all td{font-weight:600}.note{color:#8a5a00}
.plots{display:flex;flex-wrap:wrap;gap:12px}figure.plot{margin:0;border:1px solid #e4e4e4}
figure.plot figcaption{font-size:.85em;color:#555;padding:4px 8px;max-width:384px}
.na{width:400px;height:320px;display:flex;align-items:center;justify-content:center;color:#888;border:1px dashed #ccc}
.gallery{display:flex;flex-wrap:wrap;gap:12px}
.card{border:1px solid #ddd;border-radius:4px;padding:6px;width:452px}
.card.miss{border-color:#c0392b;border-width:2px}
.pics{display:flex;gap:4px}.pics img{width:220px;height:220px;image-rendering:auto;background:#eee}
.nopic{width:220px;height:220px;background:#eee;color:#888;display:flex;align-items:center;justify-content:center}
.cap{font-size:.85em;margin-top:4px;line-height:1.4}.tag{padding:0 5px;border-radius:3px;color:#fff;font-size:.9em}
.fn{background:#c0392b}.fp{background:#d35400}.ok{background:#27ae60}
.swatch{display:inline-block;width:14px;height:14px;vertical-align:middle;margin:0 4px 0 12px;border:3px solid}
details summary{cursor:pointer;margin:8px 0}
"#;

/// The page.
pub(crate) fn page(inp: &ReportInput) -> Result<String, ReportError> {
    let mut h = String::with_capacity(
        (1 << 16)
            + inp
                .pictures
                .values()
                .map(|p| (p.image_png.len() + p.overlay_png.len()) * 4 / 3)
                .sum::<usize>(),
    );
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{}</title><style>{CSS}</style></head><body>\n<h1>{}</h1>\n",
        esc(&inp.title),
        esc(&inp.title)
    );
    h.push_str(
        "<nav><a href=\"#metrics\">metrics</a><a href=\"#plots\">curves</a>\
         <a href=\"#scale\">colour scale</a><a href=\"#gallery\">gallery</a>\
         <a href=\"#model\">model</a><a href=\"#images\">all images</a></nav>\n",
    );

    metrics_section(&mut h, inp);
    plots_section(&mut h, inp)?;
    scale_section(&mut h, inp);
    gallery_section(&mut h, inp);

    h.push_str("<h2 id=\"model\">Model</h2>\n<table class=\"meta\"><tbody>\n");
    for (k, v) in &inp.metadata {
        let _ = writeln!(h, "<tr><td>{}</td><td>{}</td></tr>", esc(k), esc(v));
    }
    h.push_str("</tbody></table>\n");

    all_images_section(&mut h, inp);
    h.push_str("</body></html>\n");
    Ok(h)
}

fn metrics_section(h: &mut String, inp: &ReportInput) {
    h.push_str(
        "<h2 id=\"metrics\">Metrics</h2>\n<p>Threshold-free metrics of the test split; each defect \
         type is evaluated with ALL good images. Fractions in [0, 1]; F1 threshold in image-score \
         units.</p>\n<table><thead><tr><th>set</th><th>image AUROC</th><th>pixel AUROC</th>\
         <th>AUPRO</th><th>pixel AP</th><th>image F1-max</th><th>F1 threshold</th><th>images</th>\
         <th>anomalous</th></tr></thead><tbody>\n",
    );
    let row = |h: &mut String, name: &str, class: &str, m: &Metrics| {
        let _ = writeln!(
            h,
            "<tr class=\"{class}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(name),
            num(m.image_auroc),
            num(m.pixel_auroc),
            num(m.aupro),
            num(m.pixel_ap),
            num(m.image_f1_max),
            num(m.image_f1_threshold),
            m.n_images,
            m.n_anomalous
        );
    };
    row(h, "all", "all", &inp.metrics.overall);
    for (d, m) in &inp.metrics.per_defect {
        row(h, d, "", m);
    }
    h.push_str("</tbody></table>\n");
    for n in &inp.notes {
        let _ = writeln!(h, "<p class=\"note\">⚠ {}</p>", esc(n));
    }

    // Decisions at the model's stored threshold.
    let t = inp.image_threshold;
    let (mut tp, mut fp, mut fn_, mut tn) = (0usize, 0usize, 0usize, 0usize);
    let mut folders: std::collections::BTreeMap<&str, (usize, usize, usize)> = Default::default();
    for im in &inp.images {
        let p = im.predicted(t);
        match (im.anomalous, p) {
            (true, true) => tp += 1,
            (true, false) => fn_ += 1,
            (false, true) => fp += 1,
            (false, false) => tn += 1,
        }
        let e = folders.entry(im.defect.as_str()).or_default();
        e.0 += 1;
        e.1 += usize::from(p);
        e.2 += usize::from(p != im.anomalous);
    }
    let n = inp.images.len().max(1);
    let _ = write!(
        h,
        "<h3>At the stored threshold (image score ≥ {t:.6} ⇒ anomalous)</h3>\n<p>TP {tp} · FP {fp} · \
         FN {fn_} · TN {tn} · accuracy {:.1} %</p>\n<table><thead><tr><th>folder</th><th>images</th>\
         <th>predicted anomalous</th><th>misses</th></tr></thead><tbody>\n",
        100.0 * (tp + tn) as f64 / n as f64
    );
    for (d, (k, p, m)) in &folders {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{k}</td><td>{p}</td><td>{m}</td></tr>",
            esc(d)
        );
    }
    h.push_str("</tbody></table>\n");
}

fn figure(h: &mut String, id: &str, svg: Option<String>, missing: &str, caption: &str) {
    let _ = write!(h, "<figure class=\"plot\" id=\"{id}\">");
    match svg {
        Some(s) => h.push_str(&s),
        None => {
            let _ = write!(h, "<div class=\"na\">{}</div>", esc(missing));
        }
    }
    let _ = writeln!(h, "<figcaption>{}</figcaption></figure>", esc(caption));
}

fn plots_section(h: &mut String, inp: &ReportInput) -> Result<(), ReportError> {
    h.push_str("<h2 id=\"plots\">Curves</h2>\n<div class=\"plots\">\n");
    let m = &inp.metrics.overall;
    let c = &inp.curves;
    let image = c.image_roc.as_ref().zip(m.image_auroc);
    let pixel = c.pixel_roc.as_ref().zip(m.pixel_auroc);
    let roc = if image.is_some() || pixel.is_some() {
        Some(plots::roc(image, pixel)?)
    } else {
        None
    };
    figure(
        h,
        "roc",
        roc,
        "ROC n/a: needs normal and anomalous images",
        "ROC of the image scores (blue) and of all test pixels pooled (red).",
    );
    let pro = match (&c.pro, m.aupro) {
        (Some(curve), Some(a)) => Some(plots::pro(curve, a, realnet_metrics::AUPRO_FPR_LIMIT)?),
        _ => None,
    };
    figure(
        h,
        "pro",
        pro,
        "PRO n/a: needs anomalous and normal pixels",
        "Per-region overlap (mean over ground-truth regions of the fraction detected) against the \
         pixel false-positive rate, up to 0.3; AUPRO is its area divided by 0.3.",
    );
    let hist = (!inp.images.is_empty())
        .then(|| plots::histogram(&inp.images, inp.image_threshold))
        .transpose()?;
    figure(
        h,
        "histogram",
        hist,
        "no images",
        "Image scores of normal (blue) and anomalous (red) test images; the black line is the \
         model's stored threshold (chosen on held-out normal and synthetic images, not on this set).",
    );
    h.push_str("</div>\n");
    Ok(())
}

/// The colour bar: the overlay's scale from 0 to 1 with the pixel threshold marked.
pub(crate) fn colour_bar(pixel_threshold: f64) -> String {
    let (x0, w) = (14.0, 400.0);
    let mut s = String::from(
        "<svg class=\"colourbar\" width=\"430\" height=\"62\" viewBox=\"0 0 430 62\" role=\"img\" \
         aria-label=\"colour scale 0 to 1\"><defs><linearGradient id=\"realnet-scale\" x1=\"0\" \
         x2=\"1\" y1=\"0\" y2=\"0\">",
    );
    for (i, a) in ANCHORS.iter().enumerate() {
        let _ = write!(
            s,
            "<stop offset=\"{}%\" stop-color=\"{}\"/>",
            i * 25,
            rgb(*a)
        );
    }
    let _ = write!(
        s,
        "</linearGradient></defs><rect x=\"{x0}\" y=\"6\" width=\"{w}\" height=\"22\" \
         fill=\"url(#realnet-scale)\" stroke=\"#333\"/>"
    );
    for i in 0..=4 {
        let v = i as f64 / 4.0;
        let x = x0 + w * v;
        let _ = write!(
            s,
            "<line x1=\"{x}\" x2=\"{x}\" y1=\"28\" y2=\"33\" stroke=\"#333\"/><text x=\"{x}\" y=\"46\" \
             text-anchor=\"middle\" font-size=\"12\" font-family=\"sans-serif\">{v}</text>"
        );
    }
    if pixel_threshold.is_finite() {
        let x = x0 + w * pixel_threshold.clamp(0.0, 1.0);
        let _ = write!(
            s,
            "<line x1=\"{x}\" x2=\"{x}\" y1=\"2\" y2=\"32\" stroke=\"#000\" stroke-width=\"3\"/>\
             <line x1=\"{x}\" x2=\"{x}\" y1=\"2\" y2=\"32\" stroke=\"{}\" stroke-width=\"1.5\"/>\
             <text x=\"{x}\" y=\"59\" text-anchor=\"middle\" font-size=\"11\" \
             font-family=\"sans-serif\">pixel threshold {pixel_threshold:.3}</text>",
            rgb(PRED_OUTLINE)
        );
    }
    s.push_str("</svg>");
    s
}

fn scale_section(h: &mut String, inp: &ReportInput) {
    h.push_str("<h2 id=\"scale\">Colour scale</h2>\n");
    h.push_str(&colour_bar(inp.pixel_threshold));
    let _ = write!(
        h,
        "\n<p>Overlays show the anomaly map (the probability that a pixel is anomalous, in [0, 1]) on a \
         <b>fixed</b> scale from 0 to 1 — the same for every image and every model, never stretched \
         per image. The colour is blended over the image with opacity 0.15 + 0.45·p (faint at 0, 60 % \
         at 1).\
         <span class=\"swatch\" style=\"border-color:{}\"></span>ground-truth outline\
         <span class=\"swatch\" style=\"border-color:{}\"></span>predicted outline (map ≥ pixel \
         threshold {:.4})</p>\n",
        rgb(GT_OUTLINE),
        rgb(PRED_OUTLINE),
        inp.pixel_threshold
    );
}

fn card(h: &mut String, inp: &ReportInput, i: usize) {
    let Some(im) = inp.images.get(i) else {
        return;
    };
    let t = inp.image_threshold;
    let pred = im.predicted(t);
    let miss = pred != im.anomalous;
    let word = |b: bool| if b { "anomalous" } else { "normal" };
    let tag = match (im.anomalous, pred) {
        (true, false) => "<span class=\"tag fn\">false negative</span>",
        (false, true) => "<span class=\"tag fp\">false positive</span>",
        _ => "<span class=\"tag ok\">correct</span>",
    };
    let _ = write!(
        h,
        "<div class=\"card{}\" data-name=\"{}\"><div class=\"pics\">",
        if miss { " miss" } else { "" },
        esc(&im.name)
    );
    match inp.pictures.get(&i) {
        Some(Picture {
            image_png,
            overlay_png,
        }) => {
            let _ = write!(
                h,
                "<img src=\"{}\" alt=\"{} image\"><img src=\"{}\" alt=\"{} overlay\">",
                data_uri(image_png),
                esc(&im.name),
                data_uri(overlay_png),
                esc(&im.name)
            );
        }
        None => h.push_str("<div class=\"nopic\">no picture</div>"),
    }
    let _ = writeln!(
        h,
        "</div><div class=\"cap\"><b>{}</b> ({}) {tag}<br>score {:.4} (threshold {t:.4}) · truth {} · \
         predicted {}</div></div>",
        esc(&im.name),
        esc(&im.defect),
        im.score,
        word(im.anomalous),
        word(pred)
    );
}

fn gallery_section(h: &mut String, inp: &ReportInput) {
    let g = Gallery::pick(&inp.images, inp.image_threshold, inp.gallery_size);
    h.push_str(
        "<h2 id=\"gallery\">Gallery</h2>\n<p>Left: the image as the model saw it. Right: the overlay \
         (colour scale above; green = ground truth, yellow = predicted mask).</p>\n",
    );
    let sections: [(&str, &str, &[usize], &str); 4] = [
        (
            "false-negatives",
            "Missed anomalies (false negatives)",
            &g.false_negatives,
            "none: every anomalous image scored at or above the threshold",
        ),
        (
            "false-positives",
            "False alarms (false positives)",
            &g.false_positives,
            "none: every normal image scored below the threshold",
        ),
        ("most", "Most anomalous", &g.most, "no images"),
        ("least", "Least anomalous", &g.least, "no images"),
    ];
    for (id, title, idx, empty) in sections {
        let _ = writeln!(
            h,
            "<h3 id=\"{id}\">{title} ({})</h3>\n<div class=\"gallery\" id=\"gallery-{id}\">",
            idx.len()
        );
        if idx.is_empty() {
            let _ = write!(h, "<p>{empty}</p>");
        }
        for &i in idx {
            card(h, inp, i);
        }
        h.push_str("</div>\n");
    }
}

fn all_images_section(h: &mut String, inp: &ReportInput) {
    let mut order: Vec<&ImageEntry> = inp.images.iter().collect();
    order.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.name.cmp(&b.name))
    });
    let _ = write!(
        h,
        "<h2 id=\"images\">All images</h2>\n<details><summary>{} test images by score</summary>\
         <table><thead><tr><th>image</th><th>score</th><th>truth</th><th>predicted</th></tr></thead>\
         <tbody>\n",
        order.len()
    );
    for im in order {
        let p = im.predicted(inp.image_threshold);
        let w = |b: bool| if b { "anomalous" } else { "normal" };
        let _ = writeln!(
            h,
            "<tr{}><td>{}</td><td>{:.4}</td><td>{}</td><td>{}</td></tr>",
            if p != im.anomalous {
                " class=\"note\""
            } else {
                ""
            },
            esc(&im.name),
            im.score,
            w(im.anomalous),
            w(p)
        );
    }
    h.push_str("</tbody></table></details>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn colour_bar_uses_the_overlay_anchors() {
        let s = colour_bar(0.5);
        for a in ANCHORS {
            assert!(s.contains(&rgb(a)));
        }
        assert!(s.contains("pixel threshold 0.500"));
    }
}
