//! Fuzzes the error-payload classification with arbitrary body bytes: no panic, no error
//! status or garbage body classified as success, raw body kept within its cap.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = connectors::fuzzing::check_error_body(data) {
        panic!("{violation}");
    }
});
