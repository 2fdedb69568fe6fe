//! `realnet metrics`: metrics of anomaly maps written by any method, against a category's test split.
//!
//! Maps are `MAPS/<defect>/<stem>.npy|.tiff` (float, any size; `<defect>` is the test sub-folder, with
//! `good` also accepted for the normal folder of layouts that name it otherwise). Masks must have
//! their image's size and are resized with nearest to each map. Every problem is collected and
//! reported (each naming its file) before exiting with 3: metrics of a partial test set would not be
//! comparable, so nothing is skipped.
use clap::Args;
use rayon::prelude::*;
use realnet::data::{image_io, Category, Sample};
use realnet::error::{exit, UserError};
use realnet::metrics::{evaluate, read_map, ImageScore, Scored};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct MetricsArgs {
    /// Folder of maps: DIR/<defect>/<stem>.npy or .tiff.
    #[arg(long)]
    pub maps: PathBuf,
    /// The category folder with the test split and masks.
    #[arg(long)]
    pub data: PathBuf,
    /// One JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Image score from each map: max, meanpool16 (RealNet: 16×16 box mean, then max) or meanpool:K.
    #[arg(long, default_value = "meanpool16", value_parser = ImageScore::parse)]
    pub image_score: ImageScore,
}

const MAP_EXTENSIONS: [&str; 3] = ["npy", "tiff", "tif"];

pub fn run(args: MetricsArgs, _g: &super::Global) -> anyhow::Result<i32> {
    if !args.maps.is_dir() {
        return Err(UserError::BadInput(format!(
            "{}: not a folder; pass the folder holding <defect>/<stem>.npy|.tiff maps",
            args.maps.display()
        ))
        .into());
    }
    let cat = Category::open(&args.data)?;
    if cat.test.is_empty() {
        return Err(UserError::BadInput(format!(
            "{}: the test split is empty",
            args.data.display()
        ))
        .into());
    }

    let mut problems: Vec<String> = Vec::new();
    // Maps that belong to no test image: a wrong --data, or stale files.
    let expected: BTreeSet<PathBuf> = cat
        .test
        .iter()
        .flat_map(|s| map_dirs(&args.maps, s))
        .collect();
    let candidates: BTreeSet<PathBuf> = cat
        .test
        .iter()
        .flat_map(|s| map_candidates(&args.maps, s))
        .collect();
    for path in list_maps(&args.maps)? {
        if !candidates.contains(&path) {
            let dir_ok = path.parent().is_some_and(|p| expected.contains(p));
            problems.push(format!(
                "{}: no test image of {} is called like this map{}",
                path.display(),
                args.data.display(),
                if dir_ok {
                    ""
                } else {
                    " (and its folder is no defect type of the category)"
                }
            ));
        }
    }

    let results: Vec<Result<Scored, String>> = cat
        .test
        .par_iter()
        .map(|s| load_item(&args.maps, s, args.image_score))
        .collect();
    let mut items = Vec::with_capacity(results.len());
    for r in results {
        match r {
            Ok(item) => items.push(item),
            Err(e) => problems.push(e),
        }
    }
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("error: {p}");
        }
        return Err(UserError::BadInput(format!(
            "{} problem(s) with the maps of {} (listed above); no metrics computed, since a partial test \
             set would not be comparable",
            problems.len(),
            args.maps.display()
        ))
        .into());
    }

    let report = evaluate(&items).map_err(|e| UserError::BadInput(e.to_string()))?;
    for note in report.notes() {
        tracing::warn!("{note}");
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{} test images of {} ({} anomalous), image score = {}",
            report.overall.n_images, cat.name, report.overall.n_anomalous, args.image_score
        );
        print!("{}", report.table());
    }
    Ok(exit::OK)
}

/// The folders a sample's map may live in: MAPS/<defect>/ and, if the test folder has another name
/// (BTAD's `ok`), MAPS/<folder>/.
fn map_dirs(maps: &Path, s: &Sample) -> Vec<PathBuf> {
    let mut dirs = vec![maps.join(&s.defect)];
    if let Some(folder) = s.path.parent().and_then(Path::file_name) {
        let d = maps.join(folder);
        if !dirs.contains(&d) {
            dirs.push(d);
        }
    }
    dirs
}

fn map_candidates<'a>(maps: &'a Path, s: &'a Sample) -> impl Iterator<Item = PathBuf> + 'a {
    let stem = s.stem();
    map_dirs(maps, s).into_iter().flat_map(move |d| {
        let stem = &stem;
        MAP_EXTENSIONS
            .iter()
            .map(|e| d.join(format!("{stem}.{e}")))
            .collect::<Vec<_>>()
    })
}

/// Every map file under MAPS/<sub>/ (one level of sub-folders).
fn list_maps(maps: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let read = |d: &Path| {
        std::fs::read_dir(d)
            .map_err(|e| UserError::BadInput(format!("{}: cannot list: {e}", d.display())))
    };
    let mut out = Vec::new();
    for sub in read(maps)? {
        let sub = sub?.path();
        if !sub.is_dir() {
            continue;
        }
        for f in read(&sub)? {
            let f = f?.path();
            let ext = f
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase);
            if ext.is_some_and(|e| MAP_EXTENSIONS.contains(&e.as_str())) {
                out.push(f);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn load_item(maps: &Path, s: &Sample, score: ImageScore) -> Result<Scored, String> {
    let found: Vec<PathBuf> = map_candidates(maps, s).filter(|p| p.is_file()).collect();
    let path = match &found[..] {
        [p] => p,
        [] => {
            return Err(format!(
                "{}: no map for this test image; expected {}",
                s.path.display(),
                maps.join(&s.defect)
                    .join(format!("{}.npy (or .tiff)", s.stem()))
                    .display()
            ))
        }
        [a, b, ..] => {
            return Err(format!(
                "{}: two maps for one test image ({} and {}); keep one",
                s.path.display(),
                a.display(),
                b.display()
            ))
        }
    };
    let map = read_map(path).map_err(|e| e.to_string())?;
    let mask = match (&s.mask, s.is_anomalous()) {
        (Some(m), _) => {
            let opts = image_io::DecodeOptions::default();
            let g = image_io::load_mask_native(m, &opts).map_err(|e| e.to_string())?;
            // A mask of another size than its image belongs to another image (as `test` finds).
            let img = image_io::probe(&s.path).map_err(|e| e.to_string())?;
            if g.dimensions() != (img.width, img.height) {
                return Err(format!(
                    "{}: mask is {}×{} but its image {} is {}×{}; use the mask made for this image",
                    m.display(),
                    g.width(),
                    g.height(),
                    s.path.display(),
                    img.width,
                    img.height
                ));
            }
            let g = image_io::resize_mask(&g, map.width as u32, map.height as u32);
            Some(g.as_raw().iter().map(|&v| v > 0).collect())
        }
        (None, true) => {
            return Err(format!(
            "{}: defective test image without a ground-truth mask; add it under ground_truth/{}/",
            s.path.display(),
            s.defect
        ))
        }
        (None, false) => None,
    };
    let image_score = score.apply(&map);
    Ok(Scored {
        defect: s.defect.clone(),
        name: format!("{}/{}", s.defect, s.stem()),
        map,
        mask,
        image_score,
    })
}
