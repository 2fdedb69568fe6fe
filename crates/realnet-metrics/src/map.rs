//! Anomaly maps and their reduction to one image score.
use crate::MetricsError;

/// A row-major `height × width` anomaly map (higher = more anomalous).
#[derive(Debug, Clone, PartialEq)]
pub struct Map {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
}

impl Map {
    /// A map from row-major data; errors if `data.len() != width * height` or the map is empty.
    pub fn new(width: usize, height: usize, data: Vec<f32>) -> Result<Map, MetricsError> {
        if width == 0 || height == 0 || width.checked_mul(height) != Some(data.len()) {
            return Err(MetricsError::Shape {
                name: "map".into(),
                message: format!("{} values for a {width}×{height} map", data.len()),
            });
        }
        Ok(Map {
            width,
            height,
            data,
        })
    }

    /// Index of the first NaN/inf value, if any.
    pub fn first_non_finite(&self) -> Option<usize> {
        self.data.iter().position(|v| !v.is_finite())
    }
}

/// How an anomaly map becomes an image score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageScore {
    /// The maximum of the map.
    Max,
    /// RealNet: mean over every k×k window (stride 1, valid padding), then the maximum. Maps smaller
    /// than k in a dimension use a window clipped to the map (i.e. the mean of the whole extent).
    MeanPoolMax(usize),
}

impl ImageScore {
    /// RealNet's image score: 16×16 box mean, then max.
    pub const REALNET: ImageScore = ImageScore::MeanPoolMax(16);

    /// Parses `max`, `meanpool16` or `meanpool:K` (K ≥ 1).
    pub fn parse(s: &str) -> Result<ImageScore, String> {
        let bad =
            || format!("unknown image score '{s}': use max, meanpool16 or meanpool:K (K ≥ 1)");
        match s {
            "max" => Ok(ImageScore::Max),
            "meanpool16" => Ok(ImageScore::REALNET),
            _ => match s.strip_prefix("meanpool:").map(str::parse::<usize>) {
                Some(Ok(k)) if k >= 1 => Ok(ImageScore::MeanPoolMax(k)),
                _ => Err(bad()),
            },
        }
    }

    /// The image score of `map` (NaN-free input assumed; see [`Map::first_non_finite`]).
    pub fn apply(&self, map: &Map) -> f32 {
        match *self {
            ImageScore::Max => map.data.iter().copied().fold(f32::NEG_INFINITY, f32::max),
            ImageScore::MeanPoolMax(k) => mean_pool_max(map, k),
        }
    }
}

impl std::fmt::Display for ImageScore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImageScore::Max => write!(f, "max"),
            ImageScore::MeanPoolMax(k) => write!(f, "meanpool:{k}"),
        }
    }
}

/// Max over all k×k windows of their mean, with a summed-area table in f64 (O(H·W), exact enough that
/// the result equals the direct window mean to ~1e-12 relative).
fn mean_pool_max(map: &Map, k: usize) -> f32 {
    let (w, h) = (map.width, map.height);
    let (kw, kh) = (k.min(w).max(1), k.min(h).max(1));
    // sat[(y)*(w+1) + x] = sum of map[0..y, 0..x]
    let stride = w + 1;
    let mut sat = vec![0f64; stride * (h + 1)];
    for y in 0..h {
        let mut row = 0f64;
        let src = &map.data[y * w..(y + 1) * w];
        for x in 0..w {
            row += src[x] as f64;
            sat[(y + 1) * stride + x + 1] = sat[y * stride + x + 1] + row;
        }
    }
    let mut best = f64::NEG_INFINITY;
    for y in 0..=h - kh {
        let (top, bot) = (y * stride, (y + kh) * stride);
        for x in 0..=w - kw {
            let s = sat[bot + x + kw] - sat[top + x + kw] - sat[bot + x] + sat[top + x];
            best = best.max(s);
        }
    }
    (best / (kw * kh) as f64) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(map: &Map, k: usize) -> f32 {
        let mut best = f64::NEG_INFINITY;
        for y in 0..=map.height - k {
            for x in 0..=map.width - k {
                let mut s = 0f64;
                for dy in 0..k {
                    for dx in 0..k {
                        s += map.data[(y + dy) * map.width + x + dx] as f64;
                    }
                }
                best = best.max(s / (k * k) as f64);
            }
        }
        best as f32
    }

    #[test]
    fn mean_pool_matches_naive_windows() {
        let (w, h) = (23, 17);
        let data: Vec<f32> = (0..w * h)
            .map(|i| ((i * 7919) % 101) as f32 / 100.0 - 0.3)
            .collect();
        let m = Map::new(w, h, data).unwrap();
        for k in [1, 2, 5, 16, 17] {
            assert!(
                (ImageScore::MeanPoolMax(k).apply(&m) - naive(&m, k)).abs() < 1e-6,
                "k={k}"
            );
        }
        assert_eq!(
            ImageScore::MeanPoolMax(1).apply(&m),
            ImageScore::Max.apply(&m)
        );
    }

    #[test]
    fn mean_pool_finds_the_hot_window() {
        let mut data = vec![0f32; 32 * 32];
        for y in 10..14 {
            for x in 20..24 {
                data[y * 32 + x] = 1.0;
            }
        }
        let m = Map::new(32, 32, data).unwrap();
        assert_eq!(ImageScore::MeanPoolMax(4).apply(&m), 1.0);
        assert_eq!(ImageScore::MeanPoolMax(8).apply(&m), 16.0 / 64.0);
        // window larger than the map: mean of the whole map
        assert_eq!(ImageScore::MeanPoolMax(64).apply(&m), 16.0 / 1024.0);
    }

    #[test]
    fn parse_names() {
        assert_eq!(ImageScore::parse("max"), Ok(ImageScore::Max));
        assert_eq!(
            ImageScore::parse("meanpool16"),
            Ok(ImageScore::MeanPoolMax(16))
        );
        assert_eq!(
            ImageScore::parse("meanpool:3"),
            Ok(ImageScore::MeanPoolMax(3))
        );
        assert!(ImageScore::parse("meanpool:0").is_err());
        assert!(ImageScore::parse("mean").is_err());
        assert!(Map::new(2, 2, vec![0.0; 3]).is_err());
    }
}
