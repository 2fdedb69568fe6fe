//! The `.tiff` anomaly-map parser on arbitrary bytes: an error is fine, a panic or an allocation
//! beyond the decoder's limits is a bug.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = realnet_metrics::parse_tiff(data) {
        assert_eq!(m.data.len(), m.width * m.height);
    }
});
