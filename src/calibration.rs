//! Choosing the fusion weight and the thresholds from labelled images — never from the images the
//! metrics are reported on. At the end of training the labelled images are held-out normal images
//! and synthetic anomalies made on them; `realnet calibrate` uses a user's own labelled images
//! (real defects), which also show what synthetic anomalies cannot: the kinds of defect one part
//! of the map is blind to.
use crate::bundle::{
    self, BlurCandidate, CalibrationRecord, FusionBalance, PoolCandidate, ScoreStats, Threshold,
    WeightCandidate, WeightChoice,
};
use crate::error::UserError;
use crate::infer::Detector;
use crate::model::memory::{self, Balance, MemoryConfig, PatchMemory};
use crate::model::realnet::{self, RealNet};
use anyhow::Context;
use image::{GrayImage, RgbImage};
use realnet_data::layout::Category;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// One labelled image at the network size. An anomalous image without a mask counts for the
/// image threshold only.
pub struct Item {
    pub image: RgbImage,
    pub anomalous: bool,
    pub mask: Option<GrayImage>,
}

/// What the labelled images are, for the records in `meta.json`.
pub struct Source<'a> {
    /// e.g. "held-out normal images".
    pub normals: &'a str,
    /// e.g. "synthetic anomalies on them".
    pub anomalies: &'a str,
}

/// Every PIXEL_STEP-th pixel: plenty for a threshold and the statistics, and cheap.
const PIXEL_STEP: i64 = 7;
/// Images per forward pass.
const CHUNK: usize = 8;

/// What `fit` chooses from and how.
pub struct Plan<'a> {
    /// Candidate fusion weights (empty: the memory's own).
    pub weights: &'a [f64],
    /// The memory's configuration; its `weight` is the prior that breaks ties.
    pub memory: &'a MemoryConfig,
    /// The image score's pool window: the one the map's weight is judged with, and the prior
    /// among `pools`.
    pub score_pool: i64,
    /// Windows the image score may be pooled with instead (empty: `score_pool` only).
    pub pools: &'a [i64],
    /// Blur σ candidates for the memory's map (empty: the memory's own).
    pub blurs: &'a [f64],
    /// A balance to keep (`None`: measure it on the normal items). It belongs to the memory's own
    /// blur, so with `blurs` it is measured for each σ instead.
    pub keep_balance: Option<Balance>,
    pub source: Source<'a>,
}

/// What `fit` chose.
pub struct Fitted {
    pub threshold: Threshold,
    /// With a patch memory: the fusion weights and their candidates (also set in the network).
    pub choice: Option<WeightChoice>,
    /// The image score's pool window.
    pub score_pool: i64,
    /// Each candidate window's best image AUROC (empty when there was no choice).
    pub pool_candidates: Vec<PoolCandidate>,
}

/// Scores `items` with `net` (`input` = the normalised batch of images, `features` = the frozen
/// backbone's pass on one); with a patch memory, first
/// the fusion's balance and the weight: each candidate is scored by image and pixel AUROC and
/// `memory::choose_weight` picks one; the choice is set in `net`. The image score's weight and
/// pool window are chosen together by image AUROC (`choose_image_score`). Then the image
/// threshold is the F1-optimal one between normal and anomalous items, the pixel threshold
/// likewise over the masks.
pub fn fit(
    net: &mut RealNet,
    input: &dyn Fn(&[&RgbImage]) -> Tensor,
    features: &dyn Fn(&Tensor) -> Vec<Tensor>,
    items: &[Item],
    plan: &Plan,
) -> Fitted {
    let (mcfg, source) = (plan.memory, &plan.source);
    let weights: Vec<f64> = match net.memory() {
        None => vec![1.0],
        Some(m) if plan.weights.is_empty() => vec![m.weight()],
        Some(_) => plan.weights.to_vec(),
    };
    let blurs: Vec<f64> = match net.memory() {
        Some(_) if !plan.blurs.is_empty() => plan.blurs.to_vec(),
        Some(m) => vec![m.blur_sigma()],
        None => vec![0.0],
    };
    // The prior window first: the map's weight is judged with it.
    let mut pools = vec![plan.score_pool];
    pools.extend(plan.pools.iter().filter(|&&k| k != plan.score_pool));
    // Each chunk's RealNet map and memory distances, computed once: every blur, weight and window
    // is scored on them (one map of S² floats per item is held; validation sets are hundreds).
    let all: Vec<&Item> = items.iter().collect();
    let parts: Vec<(Tensor, Option<Tensor>)> = all
        .chunks(CHUNK)
        .map(|chunk| {
            let imgs: Vec<&RgbImage> = chunk.iter().map(|c| &c.image).collect();
            net.component_parts(&input(&imgs), features)
        })
        .collect();
    let common = Common::new(&all, &parts);
    let scored: Vec<Scored> = blurs
        .iter()
        .map(|&sigma| score(net.memory(), &parts, &common, sigma, &weights, &pools, plan))
        .collect();
    let blur_candidates: Vec<(f64, f64, f64)> = blurs
        .iter()
        .zip(&scored)
        .map(|(&sigma, s)| (sigma, s.table[s.k].image_auroc, s.table[s.k].pixel_auroc))
        .collect();
    let b = memory::choose_weight(&blur_candidates, mcfg.blur_sigma).unwrap_or(0);
    let Scored {
        balance,
        scores,
        evals,
        table,
        k,
    } = scored.into_iter().nth(b).expect("one Scored per blur");
    let labels = &common.labels;
    // Every (window, weight) pair's image ranking.
    let image_evals: Vec<Vec<_>> = scores
        .iter()
        .map(|per_pool| {
            per_pool
                .iter()
                .map(|s| realnet_metrics::ranking_metrics(s, labels))
                .collect()
        })
        .collect();
    let pairs: Vec<(i64, f64, f64)> = pools
        .iter()
        .zip(&image_evals)
        .flat_map(|(&pool, per_pool)| {
            weights
                .iter()
                .zip(per_pool)
                .map(move |(&w, e)| (pool, w, e.auroc.unwrap_or(0.5)))
        })
        .collect();
    let chosen = choose_image_score(&pairs, plan.score_pool, mcfg.weight).unwrap_or(k);
    let (j_pool, k_img) = (chosen / weights.len(), chosen % weights.len());
    // Each window's highest image AUROC and the weight reaching it, for the record.
    let pool_candidates: Vec<PoolCandidate> = if pools.len() > 1 {
        pairs
            .chunks(weights.len())
            .filter_map(|c| c.iter().max_by(|a, b| a.2.total_cmp(&b.2)))
            .map(|&(pool, weight, image_auroc)| PoolCandidate {
                pool,
                weight,
                image_auroc,
            })
            .collect()
    } else {
        Vec::new()
    };
    let choice = net.memory_mut().map(|m| {
        m.set_fusion(weights[k], weights[k_img], balance);
        m.set_blur_sigma(blurs[b]);
        let blur_rule = if blurs.len() > 1 {
            format!(
                "; blur σ: the one whose map weight scores highest by the same mean, within {} \
                 of the best the one closest to model.memory.blur_sigma = {}",
                memory::WEIGHT_TIE,
                mcfg.blur_sigma
            )
        } else {
            String::new()
        };
        WeightChoice {
            chosen: weights[k],
            image_chosen: Some(weights[k_img]),
            rule: if weights.len() > 1 {
                format!(
                    "map: highest mean of image and pixel AUROC between the {} and the {}; image \
                     score: highest image AUROC; within {} of the best, the one closest to \
                     model.memory.weight = {}",
                    source.normals,
                    source.anomalies,
                    memory::WEIGHT_TIE,
                    mcfg.weight
                )
            } else {
                "model.memory.weight (model.memory.auto_weight is off)".into()
            } + &blur_rule,
            candidates: table.clone(),
            blur_sigma: Some(blurs[b]),
            blur_candidates: if blurs.len() > 1 {
                blurs
                    .iter()
                    .zip(&blur_candidates)
                    .map(|(&sigma, c)| BlurCandidate {
                        sigma,
                        image_auroc: c.1,
                        pixel_auroc: c.2,
                    })
                    .collect()
            } else {
                Vec::new()
            },
            balance: Some(FusionBalance {
                log_p_mean: balance.log_p.0,
                log_p_sd: balance.log_p.1,
                log_q_mean: balance.log_q.0,
                log_q_sd: balance.log_q.1,
            }),
        }
    });
    // The image threshold belongs to the image score's weight and window, the pixel threshold to
    // the map's weight.
    let (img, pix) = (&image_evals[j_pool][k_img], &evals[k].1);
    let scores = &scores[j_pool][k_img];
    let pick = |anomalous: bool| -> Vec<f64> {
        scores
            .iter()
            .zip(labels)
            .filter(|(_, &l)| l == anomalous)
            .map(|(&s, _)| s)
            .collect()
    };
    let (normal, anomalous) = (pick(false), pick(true));
    let threshold = Threshold {
        image: img.f1_threshold.unwrap_or(0.5),
        pixel: pix.f1_threshold.unwrap_or(0.5),
        method: format!(
            "F1-optimal between {} {} and {} {}",
            normal.len(),
            source.normals,
            anomalous.len(),
            source.anomalies
        ),
        val_normal: ScoreStats::of(&normal),
        val_synthetic: ScoreStats::of(&anomalous),
        val_auroc: img.auroc,
    };
    Fitted {
        threshold,
        choice,
        score_pool: pools[j_pool],
        pool_candidates,
    }
}

/// Every PIXEL_STEP-th value of a tensor, on the host.
fn sampled(t: &Tensor) -> Vec<f64> {
    host_f64(&t.flatten(0, -1).slice(0, 0, None, PIXEL_STEP))
}

/// What every blur's scoring shares: the labels and RealNet's sampled pixels.
struct Common {
    labels: Vec<bool>,
    /// (chunk, position) of the normal items, in order.
    normals: Vec<(usize, i64)>,
    /// (chunk, position) of the items whose pixels count: a defect without a mask says nothing
    /// about its pixels.
    masked: Vec<(usize, i64)>,
    pix_p: Tensor,
    pix_labels: Vec<bool>,
}

impl Common {
    fn new(all: &[&Item], parts: &[(Tensor, Option<Tensor>)]) -> Common {
        let (mut labels, mut normals, mut masked) = (Vec::new(), Vec::new(), Vec::new());
        let (mut pix_p, mut pix_labels) = (Vec::new(), Vec::new());
        for (ci, (chunk, (p, _))) in all.chunks(CHUNK).zip(parts).enumerate() {
            let pixels = (p.size()[1] * p.size()[2]) as usize;
            for (i, item) in chunk.iter().enumerate() {
                labels.push(item.anomalous);
                if !item.anomalous {
                    normals.push((ci, i as i64));
                }
                if item.anomalous && item.mask.is_none() {
                    continue;
                }
                masked.push((ci, i as i64));
                pix_p.extend(sampled(&p.get(i as i64)));
                pix_labels.extend(
                    (0..pixels)
                        .step_by(PIXEL_STEP as usize)
                        .map(|j| item.mask.as_ref().is_some_and(|m| m.as_raw()[j] > 0)),
                );
            }
        }
        Common {
            labels,
            normals,
            masked,
            pix_p: Tensor::from_slice(&pix_p),
            pix_labels,
        }
    }
}

/// One blur's scoring: the balance, the image scores per window and weight, each weight's
/// (image, pixel) ranking with the prior window, the table and the chosen map weight `k`.
struct Scored {
    balance: Balance,
    scores: Vec<Vec<Vec<f64>>>,
    evals: Vec<(Ranking, Ranking)>,
    table: Vec<WeightCandidate>,
    k: usize,
}

type Ranking = realnet_metrics::RankingMetrics;

/// Scores every weight and window with the memory's map blurred by `sigma` (`memory::fuse`): the
/// balance measured on the normal items (or the plan's kept one), then `memory::choose_weight`.
#[allow(clippy::too_many_arguments)]
fn score(
    memory: Option<&PatchMemory>,
    parts: &[(Tensor, Option<Tensor>)],
    common: &Common,
    sigma: f64,
    weights: &[f64],
    pools: &[i64],
    plan: &Plan,
) -> Scored {
    let q: Vec<Option<Tensor>> = parts
        .iter()
        .map(|(p, g)| {
            memory
                .zip(g.as_ref())
                .map(|(m, g)| m.maps_from_grid(g, p.size()[1], sigma))
        })
        .collect();
    let keep = plan.keep_balance.filter(|_| plan.blurs.is_empty());
    let balance = match (memory, keep) {
        (None, _) => Balance::IDENTITY,
        (Some(_), Some(b)) => b,
        (Some(_), None) => {
            // Sampled over stacks of CHUNK normal items, as when normals were scored apart.
            let stacked = |map: &dyn Fn(usize, i64) -> Option<Tensor>| -> Vec<f64> {
                common
                    .normals
                    .chunks(CHUNK)
                    .flat_map(|c| {
                        let maps: Vec<Tensor> =
                            c.iter().filter_map(|&(ci, i)| map(ci, i)).collect();
                        if maps.is_empty() {
                            Vec::new()
                        } else {
                            sampled(&Tensor::stack(&maps, 0))
                        }
                    })
                    .collect()
            };
            let p = stacked(&|ci, i| Some(parts[ci].0.get(i)));
            let q = stacked(&|ci, i| q[ci].as_ref().map(|q| q.get(i)));
            Balance::of_normal(&p, &q)
        }
    };
    let mut scores = vec![vec![Vec::new(); weights.len()]; pools.len()];
    for ((p, _), q) in parts.iter().zip(&q) {
        for (k, &w) in weights.iter().enumerate() {
            let fused = memory::fuse_if(p, q.as_ref(), w, &balance);
            for (per_pool, &pool) in scores.iter_mut().zip(pools) {
                per_pool[k].extend(host_f64(&realnet::image_scores(&fused, pool)));
            }
        }
    }
    let pix_q: Vec<f64> = common
        .masked
        .iter()
        .filter_map(|&(ci, i)| q[ci].as_ref().map(|q| sampled(&q.get(i))))
        .flatten()
        .collect();
    let pix_q = (!pix_q.is_empty()).then(|| Tensor::from_slice(&pix_q));
    let evals: Vec<_> = weights
        .iter()
        .zip(&scores[0])
        .map(|(&w, s)| {
            let pix = host_f64(&memory::fuse_if(&common.pix_p, pix_q.as_ref(), w, &balance));
            (
                realnet_metrics::ranking_metrics(s, &common.labels),
                realnet_metrics::ranking_metrics(&pix, &common.pix_labels),
            )
        })
        .collect();
    let table: Vec<WeightCandidate> = weights
        .iter()
        .zip(&evals)
        .map(|(&weight, (img, pix))| WeightCandidate {
            weight,
            image_auroc: img.auroc.unwrap_or(0.5),
            pixel_auroc: pix.auroc.unwrap_or(0.5),
        })
        .collect();
    let triples: Vec<_> = table
        .iter()
        .map(|c| (c.weight, c.image_auroc, c.pixel_auroc))
        .collect();
    let k = memory::choose_weight(&triples, plan.memory.weight).unwrap_or(0);
    Scored {
        balance,
        scores,
        evals,
        table,
        k,
    }
}

/// Index of the best (pool window, weight, image AUROC) candidate by image AUROC; among those
/// within [`memory::WEIGHT_TIE`] of the best, the window closest to `prior_pool` (by ratio), then
/// the weight closest to `prior_weight`. The image score has its own weight because the image
/// decision and the outline can prefer different shares — on Magnetic Tile's validation data
/// image AUROC is best with little of RealNet (w 0–0.2), pixel AUROC with much (0.6–0.8) — and one
/// weight for both gave away the image decision for the outline.
pub fn choose_image_score(
    candidates: &[(i64, f64, f64)],
    prior_pool: i64,
    prior_weight: f64,
) -> Option<usize> {
    let best = candidates
        .iter()
        .map(|c| c.2)
        .fold(f64::NEG_INFINITY, f64::max);
    let distance = |c: &(i64, f64, f64)| {
        let pool = (c.0 as f64 / prior_pool as f64).ln().abs();
        (pool, (c.1 - prior_weight).abs())
    };
    (0..candidates.len())
        .filter(|&i| candidates[i].2 >= best - memory::WEIGHT_TIE)
        .min_by(|&a, &b| {
            let (da, db) = (distance(&candidates[a]), distance(&candidates[b]));
            da.0.total_cmp(&db.0).then(da.1.total_cmp(&db.1))
        })
}

/// A float tensor's values on the host as f64.
pub fn host_f64(t: &Tensor) -> Vec<f64> {
    Vec::<f32>::try_from(t.to_device(Device::Cpu).to_kind(Kind::Float).flatten(0, -1))
        .unwrap_or_default()
        .into_iter()
        .map(f64::from)
        .collect()
}

/// `realnet calibrate`: a trained run, a category folder whose `test/` split holds the user's
/// labelled images (good ones and defective ones, masks where there are any), and a new run folder.
pub struct CalibrateOptions {
    pub run: PathBuf,
    pub data: PathBuf,
    pub out: PathBuf,
    pub weights: Option<PathBuf>,
    pub batch: usize,
    /// Blur σ candidates for the memory's map, chosen on the labelled images with the weight (the
    /// balance is then measured again on their good images); empty: the model's σ and balance.
    pub blurs: Vec<f64>,
}

/// Re-chooses the threshold and the fusion weight of `opts.run` on the labelled images and writes
/// the calibrated model to `opts.out` (the run itself is left as it was). Returns the calibrated
/// detector.
pub fn calibrate(opts: &CalibrateOptions, device: Device) -> anyhow::Result<Detector> {
    let bad = |m: String| anyhow::Error::from(UserError::BadInput(m));
    if opts.out.exists() && std::fs::read_dir(&opts.out).map_or(true, |mut d| d.next().is_some()) {
        return Err(bad(format!(
            "{}: already exists and is not empty; calibrate writes a new run folder (--out)",
            opts.out.display()
        )));
    }
    if let Some(b) = opts
        .blurs
        .iter()
        .find(|b| !(0.0..=memory::MAX_BLUR).contains(*b))
    {
        return Err(bad(format!(
            "--blur-choices holds {b}: every σ must be in [0, {}] (pixels at the network size)",
            memory::MAX_BLUR
        )));
    }
    let mut det = Detector::load(&opts.run, opts.weights.as_deref(), device)?;
    if !opts.blurs.is_empty() && det.memory().is_none() {
        return Err(bad(format!(
            "{}: --blur-choices needs a model with a patch memory (model.memory.enabled)",
            opts.run.display()
        )));
    }
    let cat = Category::open(&opts.data)?;
    let size = det.image_size();
    let mut items = Vec::with_capacity(cat.test.len());
    let mut skipped = Vec::new();
    for chunk in cat.test.chunks(opts.batch.max(1)) {
        let loaded = realnet_data::load::load_all(chunk, Some((size, size)));
        for (s, r) in chunk.iter().zip(loaded) {
            match r {
                Ok(l) => items.push(Item {
                    image: l.image,
                    anomalous: s.is_anomalous(),
                    mask: l.mask,
                }),
                Err(e) => {
                    tracing::warn!("skipping {e}");
                    skipped.push(e.to_string());
                }
            }
        }
    }
    let good = items.iter().filter(|i| !i.anomalous).count();
    let defective = items.len() - good;
    if good == 0 || defective == 0 {
        return Err(bad(format!(
            "{}: the calibration set needs good and defective images under test/ (test/good/ and \
             test/<defect>/, masks under ground_truth/<defect>/); found {good} good, {defective} \
             defective readable images",
            cat.root.display()
        )));
    }
    let with_masks = items
        .iter()
        .filter(|i| i.anomalous && i.mask.is_some())
        .count();
    let previous_threshold = det.meta.threshold.image;
    let previous_pixel = det.meta.threshold.pixel;
    let previous_weight = det.meta.memory_weight.as_ref().map(|c| c.chosen);
    let previous_image_weight = det
        .meta
        .memory_weight
        .as_ref()
        .map(WeightChoice::image_weight);
    let previous_blur_sigma = det.memory().map(|m| m.blur_sigma());
    det.calibrate(
        &items,
        Source {
            normals: "good images of the calibration set",
            anomalies: "defective images of it",
        },
        &opts.blurs,
    );
    if with_masks == 0 {
        // No defect pixels to choose from: the pixel threshold stays the validation's.
        let t = &mut det.meta.threshold;
        t.pixel = previous_pixel;
        t.method
            .push_str("; pixel threshold kept from validation (no masks)");
    }
    det.meta.calibration = Some(CalibrationRecord {
        data: std::fs::canonicalize(&opts.data).unwrap_or(opts.data.clone()),
        good,
        defective,
        with_masks,
        skipped,
        from_run: std::fs::canonicalize(&opts.run).unwrap_or(opts.run.clone()),
        previous_threshold,
        previous_weight,
        previous_image_weight,
        previous_blur_sigma: previous_blur_sigma.filter(|_| !opts.blurs.is_empty()),
    });
    write_run(&opts.run, &opts.out, &det)?;
    Ok(det)
}

/// The calibrated run folder: the configuration and history as they were, the model file with the
/// memory's new weight, and `meta.json` last (its presence marks a finished run).
fn write_run(run: &Path, out: &Path, det: &Detector) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for name in [bundle::CONFIG, bundle::HISTORY] {
        let from = run.join(name);
        if from.exists() {
            let bytes =
                std::fs::read(&from).with_context(|| format!("reading {}", from.display()))?;
            bundle::write_atomic(&out.join(name), &bytes)
                .with_context(|| format!("writing {}", out.join(name).display()))?;
        }
    }
    let mut named = bundle::read_tensors(&run.join(bundle::MODEL))?;
    named.extend(det.memory_named());
    let mut named: Vec<(String, Tensor)> = named.into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    bundle::save_tensors(&out.join(bundle::MODEL), &named)?;
    bundle::write_atomic(
        &out.join(bundle::META),
        serde_json::to_string_pretty(&det.meta)?.as_bytes(),
    )
    .with_context(|| format!("writing {}", out.join(bundle::META).display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_score_choice_prefers_merit_then_the_prior_window_then_the_prior_weight() {
        // One window: the weight within the tie band nearest the prior.
        let one = [(16, 0.0, 0.9935), (16, 0.5, 0.993), (16, 1.0, 0.9)];
        assert_eq!(choose_image_score(&one, 16, 0.5), Some(1));
        assert_eq!(choose_image_score(&one, 16, 0.0), Some(0));
        // A clearly better window wins, with its own best weight.
        let c = [
            (16, 0.0, 0.96),
            (16, 0.5, 0.95),
            (256, 0.0, 0.97),
            (256, 0.5, 0.99),
        ];
        assert_eq!(choose_image_score(&c, 16, 0.0), Some(3));
        // Within the tie band the window nearest the prior window, then the weight nearest its
        // prior.
        let c = [
            (64, 0.5, 0.9900),
            (16, 0.0, 0.9895),
            (16, 0.5, 0.9899),
            (256, 0.5, 0.9901),
        ];
        assert_eq!(choose_image_score(&c, 16, 0.5), Some(2));
        assert_eq!(choose_image_score(&c, 256, 0.5), Some(3));
        assert_eq!(choose_image_score(&[], 16, 0.5), None);
    }
}
