//! Configuration text as `realnet train --config` / `realnet sdas train --config` read it: the
//! first line is taken as one `--set key=value`, the rest as the TOML file. An error is fine, a
//! panic is a bug; a configuration that passes validation must survive the save/load round trip
//! of a run folder's `config.toml` unchanged.
#![no_main]
use libfuzzer_sys::fuzz_target;
use realnet::config::{layer_text, Config};
use realnet::sdas::config::SdasConfig;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (first, file) = text.split_once('\n').unwrap_or(("", &text));
    let sets: Vec<String> = if first.contains('=') {
        vec![first.to_string()]
    } else {
        Vec::new()
    };
    let file = Some((Path::new("fuzz.toml"), file));
    for preset in ["lite", "paper"] {
        if let Ok(base) = Config::preset(preset) {
            if let Ok(c) = layer_text(&base, file, &sets) {
                if c.validate().is_ok() {
                    let back: Config = toml::from_str(&c.to_toml()).expect("saved config reloads");
                    assert_eq!(back, c);
                }
            }
        }
        if let Ok(base) = SdasConfig::preset(preset) {
            if let Ok(c) = layer_text(&base, file, &sets) {
                if c.validate().is_ok() {
                    let back: SdasConfig =
                        toml::from_str(&c.to_toml()).expect("saved SDAS config reloads");
                    assert_eq!(back, c);
                }
            }
        }
    }
});
