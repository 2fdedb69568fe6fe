//! Weight files: PyTorch checkpoints (`.pth`, read without Python) and safetensors, the strict
//! name/shape check against an architecture, and conversion between the two.
//!
//! * [`pth::read_pth`] reads `torch.save` output (zip format of torch ≥ 1.6 and the legacy format)
//!   with a small pickle VM ([`pickle`]) that never executes anything.
//! * [`file::read_safetensors`] / [`file::write_safetensors_atomic`].
//! * [`strict::compare`] lists every missing, unexpected and wrongly shaped tensor.
//! * [`convert::convert`] is `realnet weights convert`.

pub mod convert;
pub mod file;
pub mod strict;

// The checkpoint parser is a libtorch-free crate (fuzzed on its own); same paths as before.
pub use realnet_pth::{pickle, pth};

pub use convert::{convert, ConvertSummary};
pub use file::{read_safetensors, sha256_file, TensorFile};
