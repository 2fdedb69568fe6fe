//! `realnet serve`: the trained model behind a small HTTP/JSON API (axum on tokio).
//!
//! - [`batcher`]: one inference thread owns the model and batches concurrent requests.
//! - [`routes`]: `POST /v1/predict`, `GET /v1/model`, `GET /healthz`, `GET /openapi.json`.
//!
//! Images go through the same decoder, resize and [`crate::infer::Detector::predict`] as
//! `realnet predict` and `realnet test`, so all three give the same scores. See `docs/serve.md`.
pub mod batcher;
pub mod routes;

use batcher::{BatchOptions, Batcher};
use realnet_data::image_io::DecodeOptions;
use routes::App;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tch::Device;

/// Everything `realnet serve` is configured with.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub run: PathBuf,
    pub weights: Option<PathBuf>,
    pub device: Device,
    pub addr: SocketAddr,
    pub batch: BatchOptions,
    /// Largest request body in bytes.
    pub max_body: usize,
    /// Largest decoded image (width × height).
    pub max_pixels: u64,
    /// Longest a request may take, reading its body included.
    pub timeout: Duration,
}

/// Loads the model, listens, and serves until SIGTERM or Ctrl-C; then stops accepting, finishes
/// the requests in flight and returns. Prints `listening on http://ADDR` on stdout once ready.
pub async fn run(opts: ServeOptions) -> anyhow::Result<()> {
    // The model loads before the port opens: a bad run folder fails at once (exit 4).
    let (batcher, loaded, worker) = Batcher::start(
        opts.run.clone(),
        opts.weights.clone(),
        opts.device,
        opts.batch,
    )?;
    let meta = &loaded.meta;
    let model = serde_json::json!({
        "realnet_version": env!("CARGO_PKG_VERSION"),
        "trained_with_version": meta.tool_version,
        "backbone": meta.backbone,
        "precision": opts.batch.precision.name(),
        "preset": loaded.config.preset,
        "image_size": meta.image_size,
        "score_pool": meta.score_pool,
        "category": meta.category,
        "threshold": meta.threshold,
        "training": {
            "steps": meta.steps,
            "seed": meta.seed,
            "train_images": meta.train_images,
            "val_images": meta.val_images,
            "train_seconds": meta.train_seconds,
            "device": meta.device,
            "backbone_sha256": meta.backbone_sha256,
        },
        "serving": {
            "device": crate::device::describe(opts.device),
            "max_batch": opts.batch.max_batch,
            "batch_wait_ms": opts.batch.wait.as_secs_f64() * 1e3,
            "max_queue": opts.batch.max_queue,
            "max_body_bytes": opts.max_body,
            "max_pixels": opts.max_pixels,
            "timeout_s": opts.timeout.as_secs_f64(),
        },
    });
    let app = Arc::new(App {
        batcher,
        model,
        image_size: meta.image_size as u32,
        threshold: meta.threshold.image,
        decode: DecodeOptions {
            max_pixels: opts.max_pixels,
        },
        max_body: opts.max_body,
        timeout: opts.timeout,
    });
    let listener = tokio::net::TcpListener::bind(opts.addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", opts.addr))?;
    let addr = listener.local_addr()?;
    // stdout, one line: scripts and tests wait for it (and learn the port when --addr asks for :0).
    println!("listening on http://{addr}");
    tracing::info!(
        "serving {} ({}) on http://{addr}",
        opts.run.display(),
        crate::device::describe(opts.device)
    );
    axum::serve(listener, routes::router(app))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    // The router (and with it the last Batcher) is gone: the worker answers what is queued and ends.
    let joined = tokio::task::spawn_blocking(move || worker.join()).await;
    if !matches!(joined, Ok(Ok(()))) {
        anyhow::bail!("the inference worker panicked");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!("cannot listen for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing the requests in flight");
}
