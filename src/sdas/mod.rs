//! SDAS — Strength-controllable Diffusion Anomaly Synthesis (spec §2): a class-conditional DDPM
//! learns the normal images; sampling with the reverse-step deviation inflated by √(1 + s) pushes
//! samples off the normal distribution and yields realistic anomalies (SIA images).
pub mod config;
pub mod dc_prior;
pub mod eval;
pub mod noise;
pub mod sample;
pub mod schedule;
pub mod train;
pub mod unet;
