//! `intentctl serve` stops gracefully on a SIGTERM sent the moment it prints `listening`:
//! its handlers are installed before that line (they used to be installed after it, and
//! a SIGTERM in between killed the process without draining the engine).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::intentctl;

#[test]
fn a_sigterm_right_after_listening_is_a_graceful_stop() {
    for round in 0..5 {
        let data = tempfile::tempdir().unwrap();
        let mut child = Command::new(intentctl())
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data.path())
            .args(["--purple-flea", "http://127.0.0.1:9"])
            .args(["--aeeron", "http://127.0.0.1:9"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("listening "), "round {round}: {line:?}");
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "round {round}: kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                child.kill().unwrap();
                child.wait().unwrap();
                panic!("round {round}: serve did not stop within 20 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // Killed by the signal, `code()` is None; a graceful stop exits 0.
        assert_eq!(status.code(), Some(0), "round {round}: {status:?}");
    }
}
