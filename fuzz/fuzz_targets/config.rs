//! `config.toml` as a user (or anything that writes the file) may leave it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use samizdat_node::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = Config::parse(s) {
        // What the node writes back out parses again.
        Config::parse(&c.to_commented_toml()).expect("rendered config parses");
    }
});
