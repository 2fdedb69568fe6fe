//! What a category folder holds, and every problem in it, file by file (`realnet data inspect`).
//!
//! Image headers give sizes and pixel kinds quickly; by default every image is also decoded in
//! full (on all cores), because only a full decode finds a truncated pixel stream. Masks are always
//! decoded: an empty mask can only be seen in its pixels.

use crate::image_io::{self, DecodeOptions, ImageInfo};
use crate::layout::{Category, LayoutKind, Sample};
use crate::DataError;
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// How thorough the inspection is.
#[derive(Debug, Clone, Copy)]
pub struct InspectOptions {
    /// Decode every image's pixels (finds truncated files); `false` reads headers only.
    pub full_decode: bool,
    pub decode: DecodeOptions,
}

impl Default for InspectOptions {
    fn default() -> Self {
        InspectOptions {
            full_decode: true,
            decode: DecodeOptions::default(),
        }
    }
}

/// The kinds of problem inspect reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// A defective test image has no mask file.
    MissingMask,
    /// An image cannot be used: empty, truncated, not an image, unsupported, too large.
    BadImage,
    /// A mask file cannot be decoded.
    BadMask,
    /// A mask's size differs from its image's.
    MaskSizeMismatch,
    /// A mask has no anomalous (non-zero) pixel.
    EmptyMask,
    /// A mask file that belongs to no test image.
    UnusedMask,
    /// A split has no image at all.
    EmptySplit,
}

/// One problem with one file (or folder).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Problem {
    pub kind: ProblemKind,
    pub path: PathBuf,
    pub message: String,
}

/// Counts of one split.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SplitSummary {
    pub total: usize,
    /// Images per defect type (`"good"` = normal), sorted by name.
    pub per_defect: BTreeMap<String, usize>,
}

/// Mask bookkeeping of the test split.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MaskSummary {
    /// Defective test images (each needs one mask).
    pub expected: usize,
    /// Of those, how many have a mask file.
    pub found: usize,
    pub missing: usize,
    /// Mask files that belong to no test image.
    pub unused: usize,
}

/// How many readable images have one size.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SizeCount {
    pub width: u32,
    pub height: u32,
    pub count: usize,
}

/// Sizes and pixel kinds of the readable images (train and test).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ImageSummary {
    pub readable: usize,
    pub min_width: u32,
    pub max_width: u32,
    pub min_height: u32,
    pub max_height: u32,
    pub distinct_sizes: usize,
    /// The most common sizes, most frequent first (at most 10).
    pub common_sizes: Vec<SizeCount>,
    /// `"<format> <pixel kind>"` (e.g. `"jpeg gray8"`, `"png palette8"`) → number of images.
    pub kinds: BTreeMap<String, usize>,
}

/// The full inspection result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub name: String,
    pub root: PathBuf,
    pub layout: LayoutKind,
    pub full_decode: bool,
    pub train: SplitSummary,
    pub test: SplitSummary,
    pub masks: MaskSummary,
    pub images: ImageSummary,
    /// Files in the split folders that are not images by name (skipped, not problems).
    pub ignored: Vec<PathBuf>,
    /// Every problem, train split first, then test, each in file order.
    pub problems: Vec<Problem>,
}

/// Opens `dir` with [`Category::open`] and inspects it.
pub fn inspect_dir(dir: &std::path::Path, opts: &InspectOptions) -> Result<Report, DataError> {
    Ok(inspect(&Category::open(dir)?, opts))
}

/// Inspects every file of a category in parallel.
pub fn inspect(cat: &Category, opts: &InspectOptions) -> Report {
    let samples: Vec<&Sample> = cat.train.iter().chain(cat.test.iter()).collect();
    let checked: Vec<(Option<ImageInfo>, Vec<Problem>)> =
        samples.par_iter().map(|s| check_sample(s, opts)).collect();

    let mut problems = Vec::new();
    for (split, list, dir) in [("train", &cat.train, "train"), ("test", &cat.test, "test")] {
        let needs_images = split == "train" || cat.layout != LayoutKind::Folder;
        if list.is_empty() && needs_images {
            problems.push(Problem {
                kind: ProblemKind::EmptySplit,
                path: cat.root.join(dir),
                message: format!("the {split} split has no images"),
            });
        }
    }
    let mut sizes: BTreeMap<(u32, u32), usize> = BTreeMap::new();
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for (info, p) in checked {
        if let Some(i) = info {
            *sizes.entry((i.width, i.height)).or_insert(0) += 1;
            *kinds
                .entry(format!("{} {}", i.format, i.color))
                .or_insert(0) += 1;
        }
        problems.extend(p);
    }
    for path in &cat.unused_masks {
        problems.push(Problem {
            kind: ProblemKind::UnusedMask,
            path: path.clone(),
            message: "mask of no test image (is its image missing or renamed?)".into(),
        });
    }

    let expected = cat.test.iter().filter(|s| s.is_anomalous()).count();
    let missing = cat.missing_masks().count();
    Report {
        name: cat.name.clone(),
        root: cat.root.clone(),
        layout: cat.layout,
        full_decode: opts.full_decode,
        train: split_summary(&cat.train),
        test: split_summary(&cat.test),
        masks: MaskSummary {
            expected,
            found: expected - missing,
            missing,
            unused: cat.unused_masks.len(),
        },
        images: image_summary(&sizes, kinds),
        ignored: cat.ignored.clone(),
        problems,
    }
}

/// Header (and, if asked, full decode) of the image; full decode and checks of its mask.
fn check_sample(s: &Sample, opts: &InspectOptions) -> (Option<ImageInfo>, Vec<Problem>) {
    let mut problems = Vec::new();
    let bad = |kind, e: DataError, path: &PathBuf| Problem {
        kind,
        path: path.clone(),
        message: match e {
            DataError::File { message, .. } => message,
            other => other.to_string(),
        },
    };
    let info = match image_io::probe_with(&s.path, &opts.decode) {
        Ok(info) => Some(info),
        Err(e) => {
            problems.push(bad(ProblemKind::BadImage, e, &s.path));
            None
        }
    };
    let info = match info {
        Some(i) if opts.full_decode => match image_io::decode(&s.path, &opts.decode) {
            Ok(_) => Some(i),
            Err(e) => {
                problems.push(bad(ProblemKind::BadImage, e, &s.path));
                None
            }
        },
        other => other,
    };
    if s.is_anomalous() {
        match &s.mask {
            None => problems.push(Problem {
                kind: ProblemKind::MissingMask,
                path: s.path.clone(),
                message: format!(
                    "defective image ({}) without a mask; add {}_mask.png to its ground-truth \
                     folder, or pixel metrics will skip it",
                    s.defect,
                    s.stem()
                ),
            }),
            Some(mp) => match image_io::load_mask_native(mp, &opts.decode) {
                Err(e) => problems.push(bad(ProblemKind::BadMask, e, mp)),
                Ok(m) => {
                    if let Some(i) = &info {
                        if m.dimensions() != (i.width, i.height) {
                            problems.push(Problem {
                                kind: ProblemKind::MaskSizeMismatch,
                                path: mp.clone(),
                                message: format!(
                                    "mask is {}×{} but its image {} is {}×{}",
                                    m.width(),
                                    m.height(),
                                    s.path.display(),
                                    i.width,
                                    i.height
                                ),
                            });
                        }
                    }
                    if m.as_raw().iter().all(|&v| v == 0) {
                        problems.push(Problem {
                            kind: ProblemKind::EmptyMask,
                            path: mp.clone(),
                            message: "mask has no anomalous (non-zero) pixel".into(),
                        });
                    }
                }
            },
        }
    }
    (info, problems)
}

fn split_summary(list: &[Sample]) -> SplitSummary {
    let mut per_defect = BTreeMap::new();
    for s in list {
        *per_defect.entry(s.defect.clone()).or_insert(0) += 1;
    }
    SplitSummary {
        total: list.len(),
        per_defect,
    }
}

fn image_summary(
    sizes: &BTreeMap<(u32, u32), usize>,
    kinds: BTreeMap<String, usize>,
) -> ImageSummary {
    let mut common: Vec<SizeCount> = sizes
        .iter()
        .map(|(&(width, height), &count)| SizeCount {
            width,
            height,
            count,
        })
        .collect();
    common.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then((a.width, a.height).cmp(&(b.width, b.height)))
    });
    common.truncate(10);
    let ws = sizes.keys().map(|k| k.0);
    let hs = sizes.keys().map(|k| k.1);
    ImageSummary {
        readable: sizes.values().sum(),
        min_width: ws.clone().min().unwrap_or(0),
        max_width: ws.max().unwrap_or(0),
        min_height: hs.clone().min().unwrap_or(0),
        max_height: hs.max().unwrap_or(0),
        distinct_sizes: sizes.len(),
        common_sizes: common,
        kinds,
    }
}

impl Report {
    /// A human-readable report (what `realnet data inspect` prints without `--json`).
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut o = String::new();
        let _ = writeln!(o, "category  {} ({})", self.name, self.root.display());
        let _ = writeln!(o, "layout    {}", self.layout);
        let per = |s: &SplitSummary| {
            s.per_defect
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            o,
            "train     {} images ({})",
            self.train.total,
            per(&self.train)
        );
        let good = self
            .test
            .per_defect
            .get(crate::layout::GOOD)
            .copied()
            .unwrap_or(0);
        let _ = writeln!(
            o,
            "test      {} images: {} good, {} defective ({})",
            self.test.total,
            good,
            self.test.total - good,
            per(&self.test)
        );
        let _ = writeln!(
            o,
            "masks     {} of {} defective images have one ({} missing, {} unused mask files)",
            self.masks.found, self.masks.expected, self.masks.missing, self.masks.unused
        );
        let im = &self.images;
        if im.distinct_sizes <= 3 {
            let list = im
                .common_sizes
                .iter()
                .map(|s| format!("{}x{} ({})", s.width, s.height, s.count))
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(o, "sizes     {list}");
        } else {
            let _ = writeln!(
                o,
                "sizes     {} distinct: width {}-{}, height {}-{}",
                im.distinct_sizes, im.min_width, im.max_width, im.min_height, im.max_height
            );
        }
        let kinds = im
            .kinds
            .iter()
            .map(|(k, v)| format!("{k} ({v})"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(o, "kinds     {kinds}");
        let how = if self.full_decode {
            "every image decoded"
        } else {
            "headers only"
        };
        let _ = writeln!(o, "checked   {} readable images, {how}", im.readable);
        if !self.ignored.is_empty() {
            let _ = writeln!(o, "ignored   {} non-image entries:", self.ignored.len());
            for p in &self.ignored {
                let _ = writeln!(o, "  {}", p.display());
            }
        }
        if self.problems.is_empty() {
            let _ = writeln!(o, "problems  none");
        } else {
            let _ = writeln!(o, "problems  {}:", self.problems.len());
            for p in &self.problems {
                let kind = serde_json::to_value(p.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                let _ = writeln!(o, "  {} [{}]: {}", p.path.display(), kind, p.message);
            }
        }
        o
    }
}
