//! The `.npy` anomaly-map parser on arbitrary bytes: an error is fine, a panic is a bug.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = realnet_metrics::parse_npy(data) {
        assert_eq!(m.data.len(), m.width * m.height);
    }
});
