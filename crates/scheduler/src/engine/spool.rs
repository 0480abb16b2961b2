//! The retired spool: the checkpoint entries of the intents retired since the last
//! checkpoint, appended in order to a scratch file when they leave memory, and read back
//! in order by the next compaction, which copies them into its checkpoint.
//!
//! Why not read them back from the index, as before (issue 11): compaction then read
//! every retired intent from sled by id, which paged the whole tree into memory (sled's
//! cache bound does not hold for pages read in): at 400,000 retired intents the
//! resident set went from 147 MiB to 571 MiB at the first compaction, and to 3 GiB at a
//! million. A sequential file read once keeps memory flat and compaction fast.
//!
//! The spool is never a store of record and never synced: until a checkpoint holds a
//! retired intent, its records are in log segments no compaction deletes, so a crash
//! loses nothing the log does not give back (replay folds the intent into memory again).
//! So a spool left by an earlier process is stale: open deletes it. Each entry is
//! `[length: u32 LE][body]`, the body being the checkpoint entry itself (an encoded
//! `Record::Snapshot`); compaction checks each body against the 64-bit digest memory kept
//! (`Retired::digest`) and the intent's id and LSN, so damage or a mix-up fails the
//! compaction (nothing is deleted), never a checkpoint with a wrong intent.

use std::hash::{Hash, Hasher};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use intent_log::{FileSystem, WritableFile};

use crate::error::{Error, Result};

/// The spool's directory in the data directory.
pub(super) const SPOOL_DIR: &str = "spool";
/// Spool files are named `retired-<generation>.spool` in [`SPOOL_DIR`].
const PREFIX: &str = "retired-";
const SUFFIX: &str = ".spool";

/// The 64-bit digest of a spool entry's body.
pub(super) fn digest(body: &[u8]) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut hasher);
    hasher.finish()
}

pub(super) struct Spool {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    /// The file appended to; created at the first append after open or a reset.
    file: Option<(PathBuf, Box<dyn WritableFile>)>,
    /// Bytes appended to the current file.
    len: u64,
    generation: u64,
    /// A write failed: bytes past `len` are unknown, so nothing more is appended to this
    /// file. The entries before it still read back; the next compaction copies them and
    /// `reset` starts a new file.
    broken: bool,
}

impl Spool {
    /// A spool in `dir`. Spool files an earlier process left are stale (see the module
    /// doc) and are deleted; one that cannot be deleted is reported and left, since it
    /// holds nothing the log does not.
    pub(super) fn open(fs: Arc<dyn FileSystem>, dir: &Path) -> Result<Spool> {
        fs.create_dir_all(dir)
            .map_err(|error| Error::Index(format!("creating {}: {error}", dir.display())))?;
        let names = fs
            .list_files(dir)
            .map_err(|error| Error::Index(format!("listing {}: {error}", dir.display())))?;
        for name in names.iter().filter(|name| is_spool_file(name)) {
            let path = dir.join(name);
            if let Err(error) = fs.remove(&path) {
                tracing::warn!(path = %path.display(), %error, "could not delete a stale retired spool (it holds nothing the log does not)");
            }
        }
        Ok(Spool {
            fs,
            dir: dir.to_path_buf(),
            file: None,
            len: 0,
            generation: rand::random(),
            broken: false,
        })
    }

    /// Appends `bodies` in order; returns the offset of each.
    pub(super) fn append(&mut self, bodies: &[Vec<u8>]) -> Result<Vec<u64>> {
        if self.broken {
            return Err(Error::Index(
                "a write to the retired spool failed earlier: retirement waits for the next \
                 checkpoint (which copies what the spool holds) and a new spool"
                    .into(),
            ));
        }
        if self.file.is_none() {
            self.generation = self.generation.wrapping_add(1);
            let path = self
                .dir
                .join(format!("{PREFIX}{:016x}{SUFFIX}", self.generation));
            let file = self
                .fs
                .create_new(&path)
                .map_err(|error| Error::Index(format!("creating {}: {error}", path.display())))?;
            self.file = Some((path, file));
            self.len = 0;
        }
        let Some((path, file)) = self.file.as_mut() else {
            return Err(Error::Index("the retired spool is not open".into()));
        };
        let mut buffer = Vec::with_capacity(bodies.iter().map(|body| body.len() + 4).sum());
        let mut offsets = Vec::with_capacity(bodies.len());
        for body in bodies {
            let len = u32::try_from(body.len())
                .map_err(|_| Error::Index("a retired intent over 4 GiB".into()))?;
            offsets.push(self.len + buffer.len() as u64);
            buffer.extend_from_slice(&len.to_le_bytes());
            buffer.extend_from_slice(body);
        }
        if let Err(error) = file.write_all(&buffer) {
            // What was written of this batch is unknown: append nothing more here. The
            // file is kept: the entries before `len` are referenced by retired intents
            // and the next compaction reads them (switching files would orphan them).
            self.broken = true;
            return Err(Error::Index(format!("writing {}: {error}", path.display())));
        }
        self.len += buffer.len() as u64;
        Ok(offsets)
    }

    /// A reader of what was appended so far (to the current file).
    pub(super) fn reader(&self) -> Result<SpoolReader> {
        let Some((path, _)) = &self.file else {
            return Ok(SpoolReader::empty());
        };
        let (file, _) = self
            .fs
            .open_read(path)
            .map_err(|error| Error::Index(format!("reading {}: {error}", path.display())))?;
        Ok(SpoolReader {
            file: Some(file),
            path: path.clone(),
            offset: 0,
            end: self.len,
        })
    }

    /// Starts over after a checkpoint holds everything appended: the next append makes a
    /// new file. Returns the used file, for [`Spool::delete`] (outside any lock: it can be
    /// large).
    pub(super) fn reset(&mut self) -> Option<PathBuf> {
        self.len = 0;
        self.broken = false;
        self.file.take().map(|(path, _)| path)
    }

    /// Deletes a used spool file (reported, not fatal, if that fails: a checkpoint holds
    /// what it held).
    pub(super) fn delete(fs: &dyn FileSystem, path: &Path) {
        if let Err(error) = fs.remove(path) {
            tracing::warn!(path = %path.display(), %error, "could not delete a used retired spool (a checkpoint holds what it held)");
        }
    }

    pub(super) fn fs(&self) -> Arc<dyn FileSystem> {
        self.fs.clone()
    }

    /// A write failed: nothing is appended before the next checkpoint resets the spool.
    pub(super) fn is_broken(&self) -> bool {
        self.broken
    }
}

fn is_spool_file(name: &str) -> bool {
    name.strip_prefix(PREFIX)
        .and_then(|rest| rest.strip_suffix(SUFFIX))
        .is_some_and(|hex| hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Reads spool entries by offset, in increasing order, a piece at a time.
pub(super) struct SpoolReader {
    file: Option<Box<dyn Read + Send>>,
    path: PathBuf,
    offset: u64,
    end: u64,
}

impl SpoolReader {
    fn empty() -> SpoolReader {
        SpoolReader {
            file: None,
            path: PathBuf::new(),
            offset: 0,
            end: 0,
        }
    }

    /// The body of the entry at `at` (at or after the last one read).
    pub(super) fn read_at(&mut self, at: u64) -> Result<Vec<u8>> {
        let path = self.path.display().to_string();
        let bad = |why: String| Error::Index(format!("retired spool {path}: {why}"));
        if at < self.offset || at.saturating_add(4) > self.end {
            return Err(bad(format!(
                "no entry at offset {at} (read up to {}, {} bytes written)",
                self.offset, self.end
            )));
        }
        let Some(file) = self.file.as_mut() else {
            return Err(bad("nothing was written".into()));
        };
        let skip = at - self.offset;
        let skipped = std::io::copy(&mut file.by_ref().take(skip), &mut std::io::sink())
            .map_err(|error| bad(error.to_string()))?;
        let mut len = [0u8; 4];
        file.read_exact(&mut len)
            .map_err(|error| bad(format!("entry at {at}: {error}")))?;
        let len = u64::from(u32::from_le_bytes(len));
        if skipped != skip || at + 4 + len > self.end {
            return Err(bad(format!("the entry at {at} runs past the end")));
        }
        let mut body = vec![0u8; len as usize];
        file.read_exact(&mut body)
            .map_err(|error| bad(format!("entry at {at}: {error}")))?;
        self.offset = at + 4 + len;
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use intent_log::StdFileSystem;

    #[test]
    fn entries_come_back_by_offset_skipping_the_ones_not_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join(format!("{PREFIX}{:016x}{SUFFIX}", 7));
        std::fs::write(&stale, b"stale").unwrap();
        let mut spool = Spool::open(Arc::new(StdFileSystem), dir.path()).unwrap();
        assert!(!stale.exists(), "a stale spool is deleted at open");
        let bodies: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i; 1 + i as usize * 97]).collect();
        let first = spool.append(&bodies[..20]).unwrap();
        let second = spool.append(&bodies[20..]).unwrap();
        let offsets: Vec<u64> = first.into_iter().chain(second).collect();
        let mut reader = spool.reader().unwrap();
        for index in (0..50).step_by(3) {
            assert_eq!(reader.read_at(offsets[index]).unwrap(), bodies[index]);
        }
        // Backwards is refused, not misread.
        assert!(reader.read_at(offsets[3]).is_err());
        // A reset starts a new, empty file.
        if let Some(used) = spool.reset() {
            Spool::delete(&StdFileSystem, &used);
        }
        let files = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(files, 0, "the used spool is deleted");
        let again = spool.append(&bodies[..1]).unwrap();
        assert_eq!(again, vec![0]);
        let mut reader = spool.reader().unwrap();
        assert_eq!(reader.read_at(0).unwrap(), bodies[0]);
        assert!(reader.read_at(offsets[5]).is_err(), "past the end");
    }
}
