//! Weight files as the backbone and model loaders read them (`realnet::weights::file::
//! parse_safetensors`: header, dtypes, shapes, offsets → libtorch tensors). An error is fine; a
//! panic or a tensor whose size disagrees with its shape is a bug.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok((tensors, _)) = realnet::weights::file::parse_safetensors(data, Path::new("fuzz")) {
        for (name, t) in &tensors {
            let n: i64 = t.size().iter().product();
            assert_eq!(t.numel() as i64, n, "tensor {name}");
        }
    }
});
