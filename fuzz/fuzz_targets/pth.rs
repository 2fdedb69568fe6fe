//! PyTorch checkpoint bytes (zip or legacy pickle stream) → tensors, as `realnet weights convert`
//! and the backbone loader read user-supplied `.pth` files. An error is fine; a panic, a hang or
//! an allocation a lying header asks for is a bug. Every tensor returned must hold exactly the
//! bytes its dtype and shape say.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ck) = realnet_pth::parse_pth(data) {
        for (name, t) in &ck.tensors {
            assert_eq!(
                t.data.len(),
                t.numel() * t.dtype.size(),
                "tensor {name}: {:?} {:?}",
                t.dtype,
                t.shape
            );
        }
    }
});
