//! Replays the committed corpus of the `wal_segment` fuzz target (fuzz/corpus/wal_segment)
//! as an ordinary test, so CI runs every input the fuzzer ever kept.

use crate::fuzzing::decode_segment_bytes;

#[test]
fn wal_segment_corpus_decodes_without_panicking_and_stops_at_the_first_bad_byte() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/wal_segment");
    let mut inputs = 0;
    let mut with_records = 0;
    let mut with_damage = 0;
    for entry in std::fs::read_dir(&dir).expect("the fuzz corpus is committed") {
        let bytes = std::fs::read(entry.expect("corpus entry").path()).expect("corpus file");
        let decoded = decode_segment_bytes(&bytes);
        assert!(decoded.body_bytes <= bytes.len());
        if let Some(bad) = decoded.first_bad_offset {
            with_damage += 1;
            let prefix = decode_segment_bytes(&bytes[..bad]);
            assert_eq!(
                prefix.records, decoded.records,
                "a record was accepted after the first bad byte"
            );
        }
        with_records += usize::from(decoded.records > 0);
        inputs += 1;
    }
    // The corpus must keep both valid segments and damaged ones, or this test proves little.
    assert!(
        inputs >= 10 && with_records >= 3 && with_damage >= 3,
        "{inputs} inputs, {with_records} with records, {with_damage} damaged"
    );
}
