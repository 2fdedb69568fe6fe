//! Foreground masks (spec §3.2): an OpenCV-compatible automatic threshold (Otsu or Triangle) on
//! one channel, a polarity, then skimage-0.19 grey closing/opening with k×k squares, exactly as
//! the official `generate_target_foreground_mask` (which calls `skimage.morphology.closing` /
//! `opening` on the 0/1 mask).
use image::{GrayImage, RgbImage};
use std::fmt;
use std::str::FromStr;

/// The channel the threshold looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// OpenCV `COLOR_RGB2GRAY` (15-bit fixed point, rounded).
    Gray,
    Red,
    Green,
    Blue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Otsu,
    Triangle,
}

/// Which side of the threshold is the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Polarity {
    /// Foreground = value > threshold.
    Bright,
    /// Foreground = value <= threshold (the official `1 - mask`).
    Dark,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Morph {
    Close(u32),
    Open(u32),
}

/// A per-category foreground rule. String form: `all`, or
/// `METHOD:CHANNEL:POLARITY[:closeK|:openK]...`, e.g. `otsu:gray:dark:close6:open6`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ForegroundRule {
    /// The whole image is foreground.
    All,
    Threshold {
        method: Method,
        channel: Channel,
        polarity: Polarity,
        ops: Vec<Morph>,
    },
}

impl fmt::Display for ForegroundRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForegroundRule::All => write!(f, "all"),
            ForegroundRule::Threshold {
                method,
                channel,
                polarity,
                ops,
            } => {
                let m = match method {
                    Method::Otsu => "otsu",
                    Method::Triangle => "triangle",
                };
                let c = match channel {
                    Channel::Gray => "gray",
                    Channel::Red => "red",
                    Channel::Green => "green",
                    Channel::Blue => "blue",
                };
                let p = match polarity {
                    Polarity::Bright => "bright",
                    Polarity::Dark => "dark",
                };
                write!(f, "{m}:{c}:{p}")?;
                for op in ops {
                    match op {
                        Morph::Close(k) => write!(f, ":close{k}")?,
                        Morph::Open(k) => write!(f, ":open{k}")?,
                    }
                }
                Ok(())
            }
        }
    }
}

impl FromStr for ForegroundRule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let help = "expected 'all' or METHOD:CHANNEL:POLARITY[:closeK|:openK]... with METHOD otsu|triangle, \
                    CHANNEL gray|red|green|blue, POLARITY bright|dark (e.g. otsu:gray:dark:close6:open6)";
        let s = s.trim().to_ascii_lowercase();
        if s == "all" {
            return Ok(ForegroundRule::All);
        }
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() < 3 {
            return Err(format!("foreground rule '{s}': {help}"));
        }
        let method = match parts[0] {
            "otsu" => Method::Otsu,
            "triangle" => Method::Triangle,
            o => {
                return Err(format!(
                    "foreground rule '{s}': unknown method '{o}'; {help}"
                ))
            }
        };
        let channel = match parts[1] {
            "gray" | "grey" => Channel::Gray,
            "red" | "r" => Channel::Red,
            "green" | "g" => Channel::Green,
            "blue" | "b" => Channel::Blue,
            o => {
                return Err(format!(
                    "foreground rule '{s}': unknown channel '{o}'; {help}"
                ))
            }
        };
        let polarity = match parts[2] {
            "bright" => Polarity::Bright,
            "dark" => Polarity::Dark,
            o => {
                return Err(format!(
                    "foreground rule '{s}': unknown polarity '{o}'; {help}"
                ))
            }
        };
        let mut ops = Vec::new();
        for p in &parts[3..] {
            let (ctor, num): (fn(u32) -> Morph, &str) = if let Some(n) = p.strip_prefix("close") {
                (Morph::Close, n)
            } else if let Some(n) = p.strip_prefix("open") {
                (Morph::Open, n)
            } else {
                return Err(format!(
                    "foreground rule '{s}': unknown operation '{p}'; {help}"
                ));
            };
            match num.parse::<u32>() {
                Ok(k) if (1..=64).contains(&k) => ops.push(ctor(k)),
                _ => {
                    return Err(format!(
                        "foreground rule '{s}': '{p}' needs a size 1..64, e.g. close6"
                    ))
                }
            }
        }
        Ok(ForegroundRule::Threshold {
            method,
            channel,
            polarity,
            ops,
        })
    }
}

impl TryFrom<String> for ForegroundRule {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<ForegroundRule> for String {
    fn from(r: ForegroundRule) -> String {
        r.to_string()
    }
}

fn norm(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase()
}

/// The official rule for a known (dataset, category) (spec §3.2), `None` when unknown. `dataset`
/// is matched loosely (`mvtec_ad`, `MVTec-AD`, `mvtec` …); an unrecognised dataset name is
/// resolved by the category alone when only one dataset has it.
pub fn known_rule(dataset: &str, category: &str) -> Option<ForegroundRule> {
    let ds = match norm(dataset).as_str() {
        "mvtec" | "mvtecad" => Some("mvtec"),
        "visa" => Some("visa"),
        "mpdd" => Some("mpdd"),
        "btad" => Some("btad"),
        _ => None,
    };
    let cat = category.trim().to_ascii_lowercase();
    match ds {
        Some(ds) => table(ds, &cat),
        None => {
            let hits: Vec<ForegroundRule> = ["mvtec", "visa", "mpdd", "btad"]
                .iter()
                .filter_map(|d| table(d, &cat))
                .collect();
            if hits.len() == 1 {
                hits.into_iter().next()
            } else {
                None
            }
        }
    }
}

/// [`known_rule`], or [`ForegroundRule::All`] for an unknown category (the caller warns).
pub fn rule_for(dataset: &str, category: &str) -> ForegroundRule {
    known_rule(dataset, category).unwrap_or(ForegroundRule::All)
}

fn table(ds: &str, cat: &str) -> Option<ForegroundRule> {
    use Channel::*;
    use Method::*;
    use Morph::*;
    use Polarity::*;
    let t = |method, channel, polarity, ops: &[Morph]| {
        Some(ForegroundRule::Threshold {
            method,
            channel,
            polarity,
            ops: ops.to_vec(),
        })
    };
    match (ds, cat) {
        ("mvtec", "carpet" | "leather" | "tile" | "wood" | "cable" | "transistor") => {
            Some(ForegroundRule::All)
        }
        ("mvtec", "pill") => t(Otsu, Gray, Bright, &[Close(6), Open(6)]),
        ("mvtec", "hazelnut" | "metal_nut" | "toothbrush") => {
            t(Triangle, Gray, Bright, &[Close(6), Open(6)])
        }
        ("mvtec", "bottle" | "capsule" | "grid" | "screw" | "zipper") => {
            t(Otsu, Gray, Dark, &[Close(6), Open(6)])
        }
        ("visa", "capsules") => Some(ForegroundRule::All),
        ("visa", "pcb1" | "pcb2" | "pcb3" | "pcb4") => {
            t(Triangle, Blue, Bright, &[Close(8), Open(3)])
        }
        (
            "visa",
            "candle" | "cashew" | "chewinggum" | "fryum" | "macaroni1" | "macaroni2" | "pipe_fryum",
        ) => t(Otsu, Gray, Bright, &[Close(3), Open(3)]),
        ("mpdd", "bracket_black" | "bracket_brown" | "connector") => {
            t(Otsu, Green, Dark, &[Close(6)])
        }
        ("mpdd", "bracket_white" | "tubes") => t(Otsu, Blue, Bright, &[Close(6)]),
        ("mpdd", "metal_plate") => t(Otsu, Gray, Dark, &[Close(6)]),
        ("btad", "02") => Some(ForegroundRule::All),
        ("btad", "01" | "03") => t(Otsu, Gray, Bright, &[Close(15), Open(6)]),
        _ => None,
    }
}

/// One channel of an RGB image as a row-major byte vector.
pub fn channel(img: &RgbImage, c: Channel) -> Vec<u8> {
    let px = img.as_raw().chunks_exact(3);
    match c {
        // OpenCV RGB2Gray<uchar>: coefficients R2YF·2^15 rounded, CV_DESCALE by 15 bits.
        Channel::Gray => px
            .map(|p| {
                ((p[0] as u32 * 9798 + p[1] as u32 * 19235 + p[2] as u32 * 3735 + (1 << 14)) >> 15)
                    as u8
            })
            .collect(),
        Channel::Red => px.map(|p| p[0]).collect(),
        Channel::Green => px.map(|p| p[1]).collect(),
        Channel::Blue => px.map(|p| p[2]).collect(),
    }
}

fn histogram(v: &[u8]) -> [u64; 256] {
    let mut h = [0u64; 256];
    for &x in v {
        h[x as usize] += 1;
    }
    h
}

/// OpenCV `THRESH_OTSU` threshold of 8-bit values (getThreshVal_Otsu_8u).
pub fn otsu_threshold(v: &[u8]) -> u8 {
    if v.is_empty() {
        return 0;
    }
    let h = histogram(v);
    let scale = 1.0 / v.len() as f64;
    let mu: f64 = h
        .iter()
        .enumerate()
        .map(|(i, &c)| i as f64 * c as f64)
        .sum::<f64>()
        * scale;
    let (mut mu1, mut q1) = (0f64, 0f64);
    let (mut max_sigma, mut max_val) = (0f64, 0u8);
    let eps = f32::EPSILON as f64;
    for (i, &c) in h.iter().enumerate() {
        let p_i = c as f64 * scale;
        mu1 *= q1;
        q1 += p_i;
        let q2 = 1.0 - q1;
        if q1.min(q2) < eps || q1.max(q2) > 1.0 - eps {
            continue;
        }
        mu1 = (mu1 + i as f64 * p_i) / q1;
        let mu2 = (mu - q1 * mu1) / q2;
        let sigma = q1 * q2 * (mu1 - mu2) * (mu1 - mu2);
        if sigma > max_sigma {
            max_sigma = sigma;
            max_val = i as u8;
        }
    }
    max_val
}

/// OpenCV `THRESH_TRIANGLE` threshold of 8-bit values (getThreshVal_Triangle_8u). Can be −1
/// or 256 for degenerate histograms, as OpenCV's.
pub fn triangle_threshold(v: &[u8]) -> i32 {
    const N: usize = 256;
    let mut h = histogram(v);
    let mut left = (0..N).find(|&i| h[i] > 0).unwrap_or(0);
    left = left.saturating_sub(1);
    let mut right = (1..N).rev().find(|&i| h[i] > 0).unwrap_or(0);
    if right < N - 1 {
        right += 1;
    }
    let (mut max, mut max_ind) = (0u64, 0usize);
    for (i, &c) in h.iter().enumerate() {
        if c > max {
            max = c;
            max_ind = i;
        }
    }
    let flipped = (max_ind as i64 - left as i64) < (right as i64 - max_ind as i64);
    if flipped {
        h.reverse();
        left = N - 1 - right;
        max_ind = N - 1 - max_ind;
    }
    let mut thresh = left as i64;
    let (a, b) = (max as f64, left as f64 - max_ind as f64);
    let mut dist = 0f64;
    for (i, &hi) in h.iter().enumerate().take(max_ind + 1).skip(left + 1) {
        let d = a * i as f64 + b * hi as f64;
        if d > dist {
            dist = d;
            thresh = i as i64;
        }
    }
    thresh -= 1;
    if flipped {
        thresh = N as i64 - 1 - thresh;
    }
    thresh as i32
}

/// The foreground mask (255 = object) of an RGB image under a rule; same size as the image.
pub fn foreground_mask(rule: &ForegroundRule, img: &RgbImage) -> GrayImage {
    let (w, h) = img.dimensions();
    let ForegroundRule::Threshold {
        method,
        channel: ch,
        polarity,
        ops,
    } = rule
    else {
        return GrayImage::from_pixel(w, h, image::Luma([255]));
    };
    let v = channel(img, *ch);
    let t = match method {
        Method::Otsu => otsu_threshold(&v) as i32,
        Method::Triangle => triangle_threshold(&v),
    };
    let mut m: Vec<u8> = v
        .iter()
        .map(|&x| {
            let bright = x as i32 > t;
            u8::from(bright == (*polarity == Polarity::Bright))
        })
        .collect();
    for op in ops {
        m = match *op {
            Morph::Close(k) => closing(&m, h as usize, w as usize, k as usize),
            Morph::Open(k) => opening(&m, h as usize, w as usize, k as usize),
        };
    }
    m.iter_mut().for_each(|x| *x *= 255);
    GrayImage::from_raw(w, h, m).unwrap_or_else(|| GrayImage::new(w, h))
}

/// Offsets `lo..=hi` (relative to the output pixel) of a k-wide window. skimage 0.19 pads the
/// even footprint to k+1 with a zero row/column in front (`shift = false`: window
/// −(k/2−1)..=k/2) or behind (`shift = true`: −k/2..=k/2−1); its dilation double-inverts the
/// footprint (skimage's `_invert_footprint` + scipy's reflection), so both ops use that window.
fn window(k: usize, shift: bool) -> (isize, isize) {
    let k = k as isize;
    if k % 2 == 1 {
        (-(k / 2), k / 2)
    } else if shift {
        (-(k / 2), k / 2 - 1)
    } else {
        (-(k / 2 - 1), k / 2)
    }
}

/// scipy.ndimage `mode='reflect'` index (d c b a | a b c d | d c b a).
#[inline]
fn reflect(i: isize, n: isize) -> usize {
    let period = 2 * n;
    let mut i = i.rem_euclid(period);
    if i >= n {
        i = period - 1 - i;
    }
    i as usize
}

/// Grey min (erosion) or max (dilation) filter with a square window, separable, reflect border.
fn min_max(m: &[u8], h: usize, w: usize, (lo, hi): (isize, isize), max: bool) -> Vec<u8> {
    let pick = |a: u8, b: u8| if max { a.max(b) } else { a.min(b) };
    let init = if max { 0u8 } else { u8::MAX };
    let mut tmp = vec![0u8; h * w];
    for r in 0..h {
        let row = &m[r * w..(r + 1) * w];
        for c in 0..w {
            let mut acc = init;
            for d in lo..=hi {
                acc = pick(acc, row[reflect(c as isize + d, w as isize)]);
            }
            tmp[r * w + c] = acc;
        }
    }
    let mut out = vec![0u8; h * w];
    for r in 0..h {
        for c in 0..w {
            let mut acc = init;
            for d in lo..=hi {
                acc = pick(acc, tmp[reflect(r as isize + d, h as isize) * w + c]);
            }
            out[r * w + c] = acc;
        }
    }
    out
}

/// skimage 0.19 `pad_for_eccentric_footprints`: even k pads k−1 on every side by edge
/// replication, runs `f` on the padded image and crops.
fn with_edge_pad(
    m: &[u8],
    h: usize,
    w: usize,
    k: usize,
    f: impl Fn(&[u8], usize, usize) -> Vec<u8>,
) -> Vec<u8> {
    if k % 2 == 1 {
        return f(m, h, w);
    }
    let p = k - 1;
    let (ph, pw) = (h + 2 * p, w + 2 * p);
    let mut pad = vec![0u8; ph * pw];
    for r in 0..ph {
        let sr = r.saturating_sub(p).min(h - 1);
        for c in 0..pw {
            let sc = c.saturating_sub(p).min(w - 1);
            pad[r * pw + c] = m[sr * w + sc];
        }
    }
    let out = f(&pad, ph, pw);
    let mut crop = Vec::with_capacity(h * w);
    for r in 0..h {
        crop.extend_from_slice(&out[(r + p) * pw + p..(r + p) * pw + p + w]);
    }
    crop
}

/// `skimage.morphology.closing(m, square(k))` (0.19) of a row-major 0/1 (or grey) map.
pub fn closing(m: &[u8], h: usize, w: usize, k: usize) -> Vec<u8> {
    if h == 0 || w == 0 || k == 0 {
        return m.to_vec();
    }
    with_edge_pad(m, h, w, k, |x, h, w| {
        let d = min_max(x, h, w, window(k, false), true);
        min_max(&d, h, w, window(k, true), false)
    })
}

/// `skimage.morphology.opening(m, square(k))` (0.19) of a row-major 0/1 (or grey) map.
pub fn opening(m: &[u8], h: usize, w: usize, k: usize) -> Vec<u8> {
    if h == 0 || w == 0 || k == 0 {
        return m.to_vec();
    }
    with_edge_pad(m, h, w, k, |x, h, w| {
        let e = min_max(x, h, w, window(k, false), false);
        min_max(&e, h, w, window(k, true), true)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_strings_round_trip() {
        for s in [
            "all",
            "otsu:gray:dark:close6:open6",
            "triangle:blue:bright:close8:open3",
            "otsu:green:dark:close6",
        ] {
            let r: ForegroundRule = s.parse().unwrap();
            assert_eq!(r.to_string(), s);
        }
        assert_eq!(
            "OTSU:Grey:Bright".parse::<ForegroundRule>().unwrap(),
            ForegroundRule::Threshold {
                method: Method::Otsu,
                channel: Channel::Gray,
                polarity: Polarity::Bright,
                ops: vec![]
            }
        );
        for bad in [
            "",
            "otsu",
            "otsu:gray",
            "median:gray:dark",
            "otsu:alpha:dark",
            "otsu:gray:up",
            "otsu:gray:dark:close",
            "otsu:gray:dark:erode3",
            "otsu:gray:dark:open0",
        ] {
            assert!(bad.parse::<ForegroundRule>().is_err(), "{bad}");
        }
        let r: ForegroundRule = serde_json::from_str("\"otsu:gray:dark:close6:open6\"").unwrap();
        assert_eq!(r, rule_for("mvtec_ad", "bottle"));
        assert!(serde_json::from_str::<ForegroundRule>("\"nonsense\"").is_err());
        assert_eq!(
            serde_json::to_string(&ForegroundRule::All).unwrap(),
            "\"all\""
        );
    }

    #[test]
    fn table_matches_the_spec() {
        let s = |d, c| rule_for(d, c).to_string();
        assert_eq!(s("mvtec_ad", "bottle"), "otsu:gray:dark:close6:open6");
        assert_eq!(s("MVTec-AD", "pill"), "otsu:gray:bright:close6:open6");
        assert_eq!(s("mvtec", "hazelnut"), "triangle:gray:bright:close6:open6");
        assert_eq!(s("mvtec", "carpet"), "all");
        assert_eq!(s("visa", "pcb3"), "triangle:blue:bright:close8:open3");
        assert_eq!(s("VisA", "pipe_fryum"), "otsu:gray:bright:close3:open3");
        assert_eq!(s("visa", "capsules"), "all");
        assert_eq!(s("mpdd", "connector"), "otsu:green:dark:close6");
        assert_eq!(s("mpdd", "tubes"), "otsu:blue:bright:close6");
        assert_eq!(s("mpdd", "metal_plate"), "otsu:gray:dark:close6");
        assert_eq!(s("btad", "01"), "otsu:gray:bright:close15:open6");
        assert_eq!(s("btad", "02"), "all");
        // Unknown dataset folder: resolved by an unambiguous category name.
        assert_eq!(s("my_copy", "screw"), "otsu:gray:dark:close6:open6");
        assert!(known_rule("mvtec", "widget").is_none());
        assert!(known_rule("visa", "bottle").is_none());
        assert_eq!(rule_for("visa", "bottle"), ForegroundRule::All);
    }

    #[test]
    fn otsu_and_triangle_by_hand() {
        // Two clusters 10 and 200: Otsu splits anywhere in [10, 200); OpenCV keeps the first max.
        let v: Vec<u8> = [10u8; 50]
            .iter()
            .chain([200u8; 50].iter())
            .copied()
            .collect();
        assert_eq!(otsu_threshold(&v), 10);
        // A constant image has no split: OpenCV returns 0.
        assert_eq!(otsu_threshold(&[7u8; 20]), 0);
        // Triangle: peak at 5 with a long tail to the right -> flipped, threshold just right of the peak region.
        let mut v = vec![5u8; 100];
        v.extend((6..=100).map(|x| x as u8));
        let t = triangle_threshold(&v);
        assert!((5..=100).contains(&t), "{t}");
        // Hand-computed: left=4, right=101, max_ind=5 -> flipped; the best distance is at reversed
        // bin 249 -> 248 -> 255 - 248 = 7.
        assert_eq!(t, 7);
    }

    #[test]
    fn closing_and_opening_follow_skimage_019() {
        // A single pixel: opening (k=2) removes it, closing keeps it.
        let mut m = vec![0u8; 36];
        m[2 * 6 + 2] = 1;
        assert!(opening(&m, 6, 6, 2).iter().all(|&x| x == 0));
        assert_eq!(closing(&m, 6, 6, 2), m);
        // A 2-pixel gap between blocks closes with k=3 (odd, centred) but k=2 leaves 1-px gaps.
        let mut m = vec![0u8; 10];
        m[..4].fill(1);
        m[6..].fill(1);
        let c3 = closing(&m, 1, 10, 3);
        assert_eq!(c3, vec![1, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
        let c2 = closing(&m, 1, 10, 2);
        assert_eq!(c2, m);
        // Even k: the off-centre windows. close(2) of [1,0,1] fills the hole; the result is extensive.
        let m = vec![0, 1, 0, 1, 0, 0];
        assert_eq!(closing(&m, 1, 6, 2), vec![0, 1, 1, 1, 0, 0]);
    }
}
