#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| balancer::fuzz::proxy_header(data));
