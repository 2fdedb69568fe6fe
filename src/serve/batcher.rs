//! The inference worker: one OS thread owns the [`Detector`] (its tensors stay on the thread that
//! made them, and libtorch runs one forward at a time anyway) and turns whatever requests are
//! queued into one batched forward pass.
//!
//! Request tasks send one [`Job`] per image through a bounded channel and await the answer on a
//! oneshot channel. The worker blocks for the first job, then keeps collecting for up to `wait` or
//! until `max_batch` images, runs [`Detector::predict`] once and answers every job. While a forward
//! runs, new jobs queue up, so under load batches fill without waiting. A full queue is refused at
//! once (the request gets 503) rather than letting latency grow without bound.
use crate::bundle::Meta;
use crate::config::Config;
use crate::infer::{Detector, Prediction};
use image::RgbImage;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tch::Device;
use tokio::sync::oneshot;

/// How the worker batches.
#[derive(Debug, Clone, Copy)]
pub struct BatchOptions {
    /// Most images in one forward pass.
    pub max_batch: usize,
    /// How long the worker waits for more images after the first one of a batch arrives.
    pub wait: Duration,
    /// Most images waiting for the worker; more are refused.
    pub max_queue: usize,
    /// The networks' precision (`--precision`).
    pub precision: crate::precision::Precision,
}

/// Why an image got no prediction.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("server busy: {0} images are already queued; retry later")]
    Busy(usize),
    #[error("the inference worker has stopped")]
    Stopped,
    #[error("inference failed: {0}")]
    Failed(String),
}

struct Job {
    image: RgbImage,
    reply: oneshot::Sender<Result<Prediction, BatchError>>,
}

/// The request side of the worker: cheap to share between request tasks.
pub struct Batcher {
    tx: SyncSender<Job>,
    max_queue: usize,
}

/// What the worker loaded, for `/v1/model` and the request handlers.
pub struct Loaded {
    pub meta: Meta,
    pub config: Config,
}

impl Batcher {
    /// Starts the worker thread, which loads the model (see [`Detector::load`]); returns once the
    /// model is loaded, or with the loading error. The worker ends when the last `Batcher` is
    /// dropped, after answering the jobs already queued.
    pub fn start(
        run: PathBuf,
        weights: Option<PathBuf>,
        device: Device,
        opts: BatchOptions,
    ) -> anyhow::Result<(Batcher, Loaded, JoinHandle<()>)> {
        let (tx, rx) = mpsc::sync_channel::<Job>(opts.max_queue.max(1));
        let (ready_tx, ready_rx) = mpsc::channel::<anyhow::Result<Loaded>>();
        let handle = std::thread::Builder::new()
            .name("realnet-infer".into())
            .spawn(move || {
                let det = match Detector::load_as(&run, weights.as_deref(), device, opts.precision)
                {
                    Ok(det) => det,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let loaded = Loaded {
                    meta: det.meta.clone(),
                    config: det.config.clone(),
                };
                if ready_tx.send(Ok(loaded)).is_ok() {
                    work(&det, &rx, opts);
                }
            })?;
        let loaded = match ready_rx.recv() {
            Ok(r) => r?,
            Err(_) => anyhow::bail!("the inference worker stopped while loading the model"),
        };
        Ok((
            Batcher {
                tx,
                max_queue: opts.max_queue,
            },
            loaded,
            handle,
        ))
    }

    /// Queues one image (already at the network size) without waiting; a request queues all its
    /// images first so they can share a batch, then awaits each [`Pending`].
    pub fn submit(&self, image: RgbImage) -> Result<Pending, BatchError> {
        let (reply, answer) = oneshot::channel();
        // try_send never blocks the async runtime; a full queue is the client's signal to back off.
        self.tx
            .try_send(Job { image, reply })
            .map_err(|e| match e {
                TrySendError::Full(_) => BatchError::Busy(self.max_queue),
                TrySendError::Disconnected(_) => BatchError::Stopped,
            })?;
        Ok(Pending(answer))
    }
}

/// A queued image's answer to come. Dropping it withdraws the image if its batch has not started.
pub struct Pending(oneshot::Receiver<Result<Prediction, BatchError>>);

impl Pending {
    pub async fn wait(self) -> Result<Prediction, BatchError> {
        self.0.await.map_err(|_| BatchError::Stopped)?
    }
}

/// The worker loop: runs until every sender is gone.
fn work(det: &Detector, rx: &Receiver<Job>, opts: BatchOptions) {
    let max_batch = opts.max_batch.max(1);
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        let deadline = Instant::now() + opts.wait;
        while jobs.len() < max_batch {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(job) => jobs.push(job),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        // A request that timed out or disconnected while queued needs no forward pass.
        jobs.retain(|j| !j.reply.is_closed());
        if jobs.is_empty() {
            continue;
        }
        let imgs: Vec<&RgbImage> = jobs.iter().map(|j| &j.image).collect();
        tracing::debug!("forward pass on {} image(s)", imgs.len());
        // tch reports libtorch errors (out of memory, …) as panics; one bad batch must not take the
        // server down, so its requests get a 500 and the worker goes on.
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| det.predict(&imgs)));
        match out {
            Ok(preds) if preds.len() == jobs.len() => {
                for (job, p) in jobs.into_iter().zip(preds) {
                    let _ = job.reply.send(Ok(p));
                }
            }
            Ok(preds) => {
                let msg = format!("{} results for {} images", preds.len(), jobs.len());
                fail(jobs, &msg)
            }
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "libtorch error".into());
                tracing::error!("forward pass failed: {msg}");
                fail(jobs, &msg);
            }
        }
    }
}

fn fail(jobs: Vec<Job>, msg: &str) {
    for job in jobs {
        let _ = job.reply.send(Err(BatchError::Failed(msg.to_string())));
    }
}
