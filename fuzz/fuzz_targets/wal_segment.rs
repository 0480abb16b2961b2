//! Fuzzes the segment decoder with arbitrary bytes: no panic, no allocation beyond the
//! input, and no record accepted after the first bad one.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let decoded = intent_log::fuzzing::decode_segment_bytes(data);
    if let Some(bad) = decoded.first_bad_offset {
        // Decoding only the prefix before the first bad byte yields the same records.
        let prefix = intent_log::fuzzing::decode_segment_bytes(&data[..bad]);
        assert_eq!(prefix.records, decoded.records);
    }
    assert!(decoded.body_bytes <= data.len());
});
