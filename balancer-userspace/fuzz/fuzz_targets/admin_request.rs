#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| balancer::fuzz::admin_request(data));
