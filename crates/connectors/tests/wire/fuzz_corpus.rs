//! Replays the `error_payload` fuzz corpus: garbage is never success, nothing panics.

use std::path::PathBuf;

#[test]
fn error_payload_corpus_never_classifies_garbage_as_success() {
    let directory =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/error_payload");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&directory)
        .unwrap_or_else(|error| panic!("{}: {error}", directory.display()))
    {
        let path = entry.unwrap().path();
        if !path.is_file() {
            continue;
        }
        let body = std::fs::read(&path).unwrap();
        if let Err(violation) = connectors::fuzzing::check_error_body(&body) {
            panic!("{}: {violation}", path.display());
        }
        // Stated directly too: no error status ever yields success for these bytes.
        for (model, status, outcome) in connectors::fuzzing::classify_error_body(&body) {
            if !(200..300).contains(&status) {
                assert!(
                    !outcome.is_success(),
                    "{} {model:?} {status}",
                    path.display()
                );
            }
        }
        replayed += 1;
    }
    assert!(
        replayed >= 20,
        "only {replayed} corpus files in {}",
        directory.display()
    );
}
