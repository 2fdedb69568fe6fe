//! `realnet serve`: a trained run behind an HTTP/JSON API (see docs/serve.md).
use crate::cli::Global;
use clap::Args;
use realnet::serve::{batcher::BatchOptions, ServeOptions};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The run folder written by `realnet train`.
    #[arg(long)]
    pub run: PathBuf,
    /// Address to listen on (port 0: any free port; the chosen one is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Backbone weights (default: the file recorded at training, or the cache).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Most images in one forward pass.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub max_batch: u64,
    /// How long the worker waits for more images once a batch has its first, in milliseconds.
    #[arg(long, default_value_t = 5)]
    pub batch_wait_ms: u64,
    /// Most images waiting for the worker; beyond it requests get 503.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_queue: u64,
    /// Largest request body, in MiB (413 beyond it).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub max_body_mb: u64,
    /// Largest decoded image, width × height (422 beyond it).
    #[arg(long, default_value_t = realnet::data::image_io::DEFAULT_MAX_PIXELS)]
    pub max_pixels: u64,
    /// Longest a request may take, reading the upload included, in seconds (408 beyond it).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_s: u64,
}

pub fn run(a: ServeArgs, g: &Global) -> anyhow::Result<i32> {
    let device = realnet::device::parse_device(&g.device)?;
    let opts = ServeOptions {
        run: a.run,
        weights: a.weights,
        device,
        addr: a.addr,
        batch: BatchOptions {
            max_batch: a.max_batch as usize,
            wait: Duration::from_millis(a.batch_wait_ms),
            max_queue: a.max_queue as usize,
            precision: g.precision()?,
        },
        max_body: (a.max_body_mb as usize) << 20,
        max_pixels: a.max_pixels,
        timeout: Duration::from_secs(a.timeout_s),
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(realnet::serve::run(opts))?;
    Ok(0)
}
