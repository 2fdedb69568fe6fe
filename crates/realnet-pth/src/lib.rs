//! PyTorch checkpoints without Python or libtorch, so the parser of these untrusted files can be
//! fuzzed on its own (`fuzz/fuzz_targets/pth.rs`).
//!
//! * [`pth::read_pth`] / [`pth::parse_pth`] read `torch.save` output (the zip format of torch ≥ 1.6
//!   and the legacy format) with a small pickle VM ([`pickle`]) that never executes anything.

pub mod pickle;
pub mod pth;

pub use pth::{parse_pth, read_pth, Checkpoint, RawTensor};
