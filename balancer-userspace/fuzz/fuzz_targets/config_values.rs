#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| balancer::fuzz::config_values(data));
