//! Dataset layouts: which files of a category folder are training images, test images and masks.
//!
//! - MVTec AD / MPDD: `CAT/train/good/*`, `CAT/test/<defect>/*`,
//!   `CAT/ground_truth/<defect>/<stem>_mask.png`.
//! - BTAD: `CAT/train/ok`, `CAT/test/{ok,ko}`, `CAT/ground_truth/ko/<stem>.png|.bmp`.
//! - VisA: `ROOT/split_csv/1cls.csv` (`object,split,label,image,mask`, paths relative to ROOT);
//!   the category folder is `ROOT/<object>`.
//! - Plain folders: normal images, optional anomalous images and masks ([`Category::from_folders`]).
//!
//! Normal images always get the defect name `"good"`. Files are sorted by name so every run sees
//! the same order. Only the folder structure is read here; decoding is [`crate::load`]'s job.

use crate::image_io::has_image_extension;
use crate::DataError;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The defect name of normal (defect-free) samples in every layout.
pub const GOOD: &str = "good";

/// Which layout a category folder was read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LayoutKind {
    /// MVTec AD and MPDD (same layout).
    Mvtec,
    Btad,
    Visa,
    Folder,
}

impl std::fmt::Display for LayoutKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LayoutKind::Mvtec => "MVTec AD / MPDD",
            LayoutKind::Btad => "BTAD",
            LayoutKind::Visa => "VisA (split_csv/1cls.csv)",
            LayoutKind::Folder => "plain folders",
        })
    }
}

/// One image of a split.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Sample {
    pub path: PathBuf,
    /// `"good"` for normal images, else the defect type (its folder name; `"anomaly"` where the
    /// layout has no types).
    pub defect: String,
    /// The ground-truth mask; `None` for normal images and for defective images whose mask is
    /// missing (inspect reports those).
    pub mask: Option<PathBuf>,
}

impl Sample {
    pub fn is_anomalous(&self) -> bool {
        self.defect != GOOD
    }

    /// The file name without its extension (`000` for `test/crack/000.png`).
    pub fn stem(&self) -> String {
        self.path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// One category: its training (normal) images and its test images with masks.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Category {
    pub name: String,
    pub root: PathBuf,
    pub layout: LayoutKind,
    pub train: Vec<Sample>,
    pub test: Vec<Sample>,
    /// Files inside the split folders that were not taken: no image extension, or sub-folders.
    pub ignored: Vec<PathBuf>,
    /// Mask files that belong to no test image (a renamed or deleted image?).
    pub unused_masks: Vec<PathBuf>,
}

impl Category {
    /// Reads a category folder, detecting its layout: BTAD (`train/ok`), MVTec AD / MPDD
    /// (`train/good` or `test/`), or a VisA object folder (a `split_csv/1cls.csv` beside it).
    pub fn open(dir: &Path) -> Result<Category, DataError> {
        if !dir.is_dir() {
            return Err(DataError::Layout(format!(
                "{}: not a folder; pass a category folder such as mvtec_ad/bottle",
                dir.display()
            )));
        }
        if visa_csv(dir).is_file() {
            return Err(DataError::Layout(format!(
                "{}: this is a VisA dataset root; pass one object folder, e.g. {}",
                dir.display(),
                dir.join("candle").display()
            )));
        }
        if dir.join("train/ok").is_dir() || dir.join("test/ko").is_dir() {
            return open_split_folders(dir, LayoutKind::Btad, "ok");
        }
        if dir.join("train/good").is_dir() || dir.join("test").is_dir() {
            return open_split_folders(dir, LayoutKind::Mvtec, GOOD);
        }
        if let (Some(root), Some(object)) = (dir.parent(), dir.file_name()) {
            if visa_csv(root).is_file() {
                return Category::open_visa(root, &object.to_string_lossy());
            }
        }
        Err(DataError::Layout(format!(
            "{}: no known dataset layout. Expected train/good + test/<defect> + ground_truth/ \
             (MVTec AD, MPDD), train/ok + test/ko (BTAD), or a VisA object folder next to \
             split_csv/1cls.csv. For plain folders of images use --normal/--abnormal.",
            dir.display()
        )))
    }

    /// One object of the official VisA release: `root/split_csv/1cls.csv` lists
    /// `object,split,label,image,mask` with paths relative to `root`.
    pub fn open_visa(root: &Path, object: &str) -> Result<Category, DataError> {
        let csv_path = visa_csv(root);
        let text = std::fs::read_to_string(&csv_path).map_err(|e| {
            DataError::file(&csv_path, format!("cannot read the VisA split file: {e}"))
        })?;
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let header = split_csv_line(lines.next().unwrap_or_default());
        let col = |name: &str| {
            header.iter().position(|h| h.trim() == name).ok_or_else(|| {
                DataError::file(
                    &csv_path,
                    format!("no column '{name}' (expected object,split,label,image,mask)"),
                )
            })
        };
        let (c_obj, c_split, c_label, c_image, c_mask) = (
            col("object")?,
            col("split")?,
            col("label")?,
            col("image")?,
            col("mask")?,
        );
        let mut train = Vec::new();
        let mut test = Vec::new();
        let mut objects = std::collections::BTreeSet::new();
        for (n, line) in lines.enumerate() {
            let f = split_csv_line(line);
            let get = |c: usize| f.get(c).map(|s| s.trim()).unwrap_or("");
            objects.insert(get(c_obj).to_string());
            if get(c_obj) != object {
                continue;
            }
            let anomalous = match get(c_label) {
                "normal" => false,
                "anomaly" => true,
                other => {
                    return Err(DataError::file(
                        &csv_path,
                        format!(
                            "line {}: label '{other}' (expected normal or anomaly)",
                            n + 2
                        ),
                    ))
                }
            };
            let sample = Sample {
                path: root.join(get(c_image)),
                defect: if anomalous { "anomaly" } else { GOOD }.to_string(),
                mask: Some(get(c_mask))
                    .filter(|m| !m.is_empty())
                    .map(|m| root.join(m)),
            };
            match get(c_split) {
                "train" => train.push(sample),
                "test" => test.push(sample),
                other => {
                    return Err(DataError::file(
                        &csv_path,
                        format!("line {}: split '{other}' (expected train or test)", n + 2),
                    ))
                }
            }
        }
        if train.is_empty() && test.is_empty() {
            let known: Vec<_> = objects.into_iter().collect();
            return Err(DataError::file(
                &csv_path,
                format!(
                    "no rows for object '{object}'; objects listed: {}",
                    known.join(", ")
                ),
            ));
        }
        for s in train.iter_mut().chain(test.iter_mut()) {
            if !s.is_anomalous() {
                s.mask = None; // normal rows have no mask; ignore stray entries
            }
        }
        sort_samples(&mut train);
        sort_samples(&mut test);
        Ok(Category {
            name: object.to_string(),
            root: root.join(object),
            layout: LayoutKind::Visa,
            train,
            test,
            ignored: Vec::new(),
            unused_masks: Vec::new(),
        })
    }

    /// Plain folders: `normal` images train; `normal_test` (if any) are normal test images;
    /// `abnormal` images are defective test images (files directly inside get the defect name
    /// `"anomaly"`, files in sub-folders the sub-folder's name). Masks are looked up in `masks`
    /// (and `masks/<defect>/`) as `<stem>_mask.*` or `<stem>.*`; none are required. Without
    /// `normal_test` nothing is held out: the caller decides.
    pub fn from_folders(
        normal: &Path,
        abnormal: Option<&Path>,
        masks: Option<&Path>,
        normal_test: Option<&Path>,
    ) -> Result<Category, DataError> {
        let mut ignored = Vec::new();
        let train = list_images(normal, &mut ignored)?
            .into_iter()
            .map(|path| Sample {
                path,
                defect: GOOD.into(),
                mask: None,
            })
            .collect();
        let mut test = Vec::new();
        if let Some(dir) = normal_test {
            test.extend(
                list_images(dir, &mut ignored)?
                    .into_iter()
                    .map(|path| Sample {
                        path,
                        defect: GOOD.into(),
                        mask: None,
                    }),
            );
        }
        let mut mask_index = MaskIndex::default();
        if let Some(m) = masks {
            mask_index.add_dir(m, None)?;
        }
        if let Some(dir) = abnormal {
            let mut sub = Vec::new();
            for path in list_images(dir, &mut sub)? {
                let mask = mask_index.take(None, &stem_of(&path));
                test.push(Sample {
                    path,
                    defect: "anomaly".into(),
                    mask,
                });
            }
            for entry in sub {
                if !entry.is_dir() {
                    ignored.push(entry);
                    continue;
                }
                let defect = file_name_of(&entry);
                if let Some(m) = masks {
                    mask_index.add_dir(&m.join(&defect), Some(&defect))?;
                }
                for path in list_images(&entry, &mut ignored)? {
                    let mask = mask_index.take(Some(&defect), &stem_of(&path));
                    test.push(Sample {
                        path,
                        defect: defect.clone(),
                        mask,
                    });
                }
            }
        }
        sort_samples(&mut test);
        let name = normal
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(file_name_of)
            .unwrap_or_else(|| file_name_of(normal));
        Ok(Category {
            name,
            root: normal.to_path_buf(),
            layout: LayoutKind::Folder,
            train,
            test,
            ignored,
            unused_masks: mask_index.unused(),
        })
    }

    /// Counts per defect type of the test split (`"good"` included), sorted by name.
    pub fn test_counts(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for s in &self.test {
            *m.entry(s.defect.clone()).or_insert(0) += 1;
        }
        m
    }

    /// Defective test images that have no mask.
    pub fn missing_masks(&self) -> impl Iterator<Item = &Sample> {
        self.test
            .iter()
            .filter(|s| s.is_anomalous() && s.mask.is_none())
    }
}

/// MVTec AD / MPDD and BTAD: `train/<normal>`, `test/<defect>`, `ground_truth/<defect>`.
fn open_split_folders(dir: &Path, layout: LayoutKind, normal: &str) -> Result<Category, DataError> {
    let mut ignored = Vec::new();
    let train_dir = dir.join("train").join(normal);
    let train = if train_dir.is_dir() {
        list_images(&train_dir, &mut ignored)?
    } else {
        Vec::new()
    };
    let train = train
        .into_iter()
        .map(|path| Sample {
            path,
            defect: GOOD.into(),
            mask: None,
        })
        .collect();
    // Anything else in train/ is not used: say so.
    if let Ok(entries) = sorted_entries(&dir.join("train")) {
        ignored.extend(entries.into_iter().filter(|p| p != &train_dir));
    }

    let mut test = Vec::new();
    let mut masks = MaskIndex::default();
    let test_dir = dir.join("test");
    let gt_dir = dir.join("ground_truth");
    let defect_dirs = if test_dir.is_dir() {
        sorted_entries(&test_dir)?
    } else {
        Vec::new()
    };
    for ddir in defect_dirs {
        if !ddir.is_dir() {
            ignored.push(ddir);
            continue;
        }
        let folder = file_name_of(&ddir);
        let defect = if folder == normal {
            GOOD.to_string()
        } else {
            folder.clone()
        };
        let anomalous = defect != GOOD;
        if anomalous {
            masks.add_dir(&gt_dir.join(&folder), Some(&folder))?;
        }
        for path in list_images(&ddir, &mut ignored)? {
            let mask = if anomalous {
                masks.take(Some(&folder), &stem_of(&path))
            } else {
                None
            };
            test.push(Sample {
                path,
                defect: defect.clone(),
                mask,
            });
        }
    }
    // Mask folders with no test folder of that name are unused entirely.
    if let Ok(entries) = sorted_entries(&gt_dir) {
        for g in entries.into_iter().filter(|g| g.is_dir()) {
            if !test_dir.join(g.file_name().unwrap_or_default()).is_dir() {
                masks.add_dir(&g, Some(&file_name_of(&g)))?;
            }
        }
    }
    Ok(Category {
        name: file_name_of(dir),
        root: dir.to_path_buf(),
        layout,
        train,
        test,
        ignored,
        unused_masks: masks.unused(),
    })
}

/// Mask files by (defect folder, image stem); `take` marks a mask as used.
#[derive(Default)]
struct MaskIndex {
    /// (defect or None for a flat folder, stem) → (path, used)
    by_stem: BTreeMap<(Option<String>, String), (PathBuf, bool)>,
    /// Every mask file seen, so masks shadowed by a `_mask` twin still count as unused.
    all: Vec<PathBuf>,
}

impl MaskIndex {
    fn add_dir(&mut self, dir: &Path, defect: Option<&str>) -> Result<(), DataError> {
        if !dir.is_dir() {
            return Ok(()); // no masks for this defect: the samples report it
        }
        for path in sorted_entries(dir)?
            .into_iter()
            .filter(|p| has_image_extension(p))
        {
            let stem = stem_of(&path);
            // `000_mask.png` (MVTec, MPDD) is preferred over `000.png` (BTAD) for image `000`.
            let (key, preferred) = match stem.strip_suffix("_mask") {
                Some(s) => (s.to_string(), true),
                None => (stem, false),
            };
            let k = (defect.map(str::to_string), key);
            if preferred || !self.by_stem.contains_key(&k) {
                self.by_stem.insert(k, (path.clone(), false));
            }
            self.all.push(path);
        }
        Ok(())
    }

    fn take(&mut self, defect: Option<&str>, stem: &str) -> Option<PathBuf> {
        let entry = self
            .by_stem
            .get_mut(&(defect.map(str::to_string), stem.to_string()))?;
        entry.1 = true;
        Some(entry.0.clone())
    }

    fn unused(&self) -> Vec<PathBuf> {
        let used: std::collections::HashSet<&PathBuf> = self
            .by_stem
            .values()
            .filter(|(_, u)| *u)
            .map(|(p, _)| p)
            .collect();
        self.all
            .iter()
            .filter(|p| !used.contains(p))
            .cloned()
            .collect()
    }
}

fn visa_csv(root: &Path) -> PathBuf {
    root.join("split_csv").join("1cls.csv")
}

/// The entries of a folder, sorted by name, hidden files (`.DS_Store`, …) left out.
fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let rd = std::fs::read_dir(dir)
        .map_err(|e| DataError::file(dir, format!("cannot list the folder: {e}")))?;
    let mut out = Vec::new();
    for entry in rd {
        let entry =
            entry.map_err(|e| DataError::file(dir, format!("cannot list the folder: {e}")))?;
        if !entry.file_name().to_string_lossy().starts_with('.') {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Image files directly inside `dir`, sorted; everything else goes to `other`. A broken or looping
/// link named like an image counts as an image, so that reading it fails with a message.
fn list_images(dir: &Path, other: &mut Vec<PathBuf>) -> Result<Vec<PathBuf>, DataError> {
    let mut images = Vec::new();
    for p in sorted_entries(dir)? {
        if has_image_extension(&p) && !p.is_dir() {
            images.push(p);
        } else {
            other.push(p);
        }
    }
    Ok(images)
}

fn sort_samples(v: &mut [Sample]) {
    v.sort_by(|a, b| (&a.defect, &a.path).cmp(&(&b.defect, &b.path)));
}

fn stem_of(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn file_name_of(p: &Path) -> String {
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

/// Splits one CSV line; handles double-quoted fields (with `""` escapes).
fn split_csv_line(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.trim_end_matches('\r').chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    fields.push(cur);
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_with_quotes_and_empty_mask() {
        assert_eq!(
            split_csv_line("a,train,normal,a/x.JPG,"),
            vec!["a", "train", "normal", "a/x.JPG", ""]
        );
        assert_eq!(split_csv_line("\"a,b\",\"q\"\"q\"\r"), vec!["a,b", "q\"q"]);
    }

    #[test]
    fn sample_stem_and_anomaly() {
        let s = Sample {
            path: "x/test/crack/007.png".into(),
            defect: "crack".into(),
            mask: None,
        };
        assert_eq!(s.stem(), "007");
        assert!(s.is_anomalous());
    }
}
