//! Checkpoints: the state a caller still needs, written as one file that replay starts
//! from, so the segments it covers can be deleted. The log stores the entries as opaque
//! records (kind + body), like its own records; what they mean is the caller's business.
//!
//! A checkpoint covering LSN `C` is written to `checkpoint-<C>.ckpt.tmp`, synced, renamed
//! to `checkpoint-<C>.ckpt` and the directory synced: a file under the final name was
//! complete and durable before it got that name, so any damage in it is corruption, never
//! a torn write. Replay loads the newest checkpoint and then the records after `C`; only
//! segments whose records are all at or below `C` may be deleted. `docs/wal-format.md`
//! documents the bytes and what a crash at each step leaves.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::{decode_frame, encode_frame, FRAME_HEADER_BYTES};
use crate::fs::FileSystem;
use crate::options::RECORD_BYTES_MAX_LIMIT;

/// First eight bytes of a checkpoint file.
pub const CHECKPOINT_MAGIC: [u8; 8] = *b"INTENTCK";
/// Version of the checkpoint layout.
pub const CHECKPOINT_VERSION: u32 = 1;
/// Size of the checkpoint header; entries follow it.
pub const CHECKPOINT_HEADER_BYTES: usize = 64;
/// Size of the trailer that ends every checkpoint file.
pub const CHECKPOINT_TRAILER_BYTES: usize = 32;
/// Largest body of one checkpoint entry (an entry holds one whole intent).
pub const CHECKPOINT_ENTRY_BYTES_MAX: usize = RECORD_BYTES_MAX_LIMIT;
const TRAILER_MAGIC: [u8; 8] = *b"CKPTDONE";
const TMP_SUFFIX: &str = ".tmp";
/// The writer hands the file system this much at a time.
const WRITE_CHUNK_BYTES: usize = 1 << 20;

/// A durable checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointInfo {
    pub path: PathBuf,
    /// Every record at or below this LSN is covered; replay continues at `lsn + 1`.
    pub lsn: u64,
    pub entries: u64,
    pub bytes: u64,
}

/// The file name of the checkpoint covering `lsn`.
pub fn checkpoint_file_name(lsn: u64) -> String {
    format!("checkpoint-{lsn:020}.ckpt")
}

/// Parses a checkpoint file name back into its LSN.
pub fn parse_checkpoint_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("checkpoint-")?.strip_suffix(".ckpt")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn is_temporary(name: &str) -> bool {
    name.strip_suffix(TMP_SUFFIX)
        .is_some_and(|stem| parse_checkpoint_file_name(stem).is_some())
}

/// The entries' checksum seed: the log id and the checkpoint's LSN, so an entry from
/// another checkpoint or another log never verifies here.
fn seed(log_id: &[u8; 16], lsn: u64) -> crc32fast::Hasher {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(log_id);
    hasher.update(b"checkpoint");
    hasher.update(&lsn.to_le_bytes());
    hasher
}

fn encode_header(log_id: &[u8; 16], lsn: u64) -> [u8; CHECKPOINT_HEADER_BYTES] {
    let mut bytes = [0u8; CHECKPOINT_HEADER_BYTES];
    bytes[0..8].copy_from_slice(&CHECKPOINT_MAGIC);
    bytes[8..12].copy_from_slice(&CHECKPOINT_VERSION.to_le_bytes());
    bytes[12..16].copy_from_slice(&(CHECKPOINT_HEADER_BYTES as u32).to_le_bytes());
    bytes[16..32].copy_from_slice(log_id);
    bytes[32..40].copy_from_slice(&lsn.to_le_bytes());
    // 40..60 reserved, zero.
    let crc = crc32fast::hash(&bytes[0..60]);
    bytes[60..64].copy_from_slice(&crc.to_le_bytes());
    bytes
}

fn encode_trailer(
    seed: &crc32fast::Hasher,
    entries: u64,
    payload_bytes: u64,
) -> [u8; CHECKPOINT_TRAILER_BYTES] {
    let mut bytes = [0u8; CHECKPOINT_TRAILER_BYTES];
    bytes[0..8].copy_from_slice(&TRAILER_MAGIC);
    bytes[8..16].copy_from_slice(&entries.to_le_bytes());
    bytes[16..24].copy_from_slice(&payload_bytes.to_le_bytes());
    // 24..28 reserved, zero.
    let mut hasher = seed.clone();
    hasher.update(&bytes[0..28]);
    bytes[28..32].copy_from_slice(&hasher.finalize().to_le_bytes());
    bytes
}

fn word<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(slice) = bytes.get(at..at + N) {
        out.copy_from_slice(slice);
    }
    out
}

/// Checkpoint files by LSN, and leftover temporary files.
pub(crate) type Listing = (Vec<(u64, PathBuf)>, Vec<PathBuf>);

/// Lists the checkpoint files in `dir` by LSN, and leftover temporary files.
pub(crate) fn list(fs: &dyn FileSystem, dir: &Path) -> Result<Listing> {
    let names = fs
        .list_files(dir)
        .map_err(|error| Error::io("listing", dir, error))?;
    let mut checkpoints: Vec<(u64, PathBuf)> = names
        .iter()
        .filter_map(|name| parse_checkpoint_file_name(name).map(|lsn| (lsn, dir.join(name))))
        .collect();
    checkpoints.sort_by_key(|(lsn, _)| *lsn);
    let temporary = names
        .iter()
        .filter(|name| is_temporary(name))
        .map(|name| dir.join(name))
        .collect();
    Ok((checkpoints, temporary))
}

/// Writes, syncs and renames into place a checkpoint covering `lsn`.
pub(crate) fn write(
    fs: &dyn FileSystem,
    dir: &Path,
    log_id: &[u8; 16],
    lsn: u64,
    entries: &mut dyn Iterator<Item = (u8, Vec<u8>)>,
) -> Result<CheckpointInfo> {
    let path = dir.join(checkpoint_file_name(lsn));
    let temporary = dir.join(format!("{}{TMP_SUFFIX}", checkpoint_file_name(lsn)));
    // A leftover from a crash during an earlier attempt was never renamed: never durable.
    match fs.remove(&temporary) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(Error::io("removing", &temporary, error)),
    }
    let written = write_temporary(fs, &temporary, log_id, lsn, entries);
    let (count, bytes) = match written {
        Ok(done) => done,
        Err(error) => {
            if let Err(cleanup) = fs.remove(&temporary) {
                tracing::debug!(%cleanup, "could not remove a failed checkpoint's temporary file");
            }
            return Err(error);
        }
    };
    fs.rename(&temporary, &path)
        .map_err(|error| Error::io("renaming into place", &path, error))?;
    fs.sync_dir(dir)
        .map_err(|error| Error::io("syncing", dir, error))?;
    Ok(CheckpointInfo {
        path,
        lsn,
        entries: count,
        bytes,
    })
}

fn write_temporary(
    fs: &dyn FileSystem,
    temporary: &Path,
    log_id: &[u8; 16],
    lsn: u64,
    entries: &mut dyn Iterator<Item = (u8, Vec<u8>)>,
) -> Result<(u64, u64)> {
    let mut file = fs
        .create_new(temporary)
        .map_err(|error| Error::io("creating", temporary, error))?;
    let seed = seed(log_id, lsn);
    let mut buffer = Vec::with_capacity(WRITE_CHUNK_BYTES + FRAME_HEADER_BYTES);
    buffer.extend_from_slice(&encode_header(log_id, lsn));
    let mut count = 0u64;
    let mut payload_bytes = 0u64;
    let mut written = 0u64;
    for (kind, body) in entries {
        if kind == 0 {
            return Err(Error::InvalidAppend("record kind 0 is reserved"));
        }
        if body.len() > CHECKPOINT_ENTRY_BYTES_MAX {
            return Err(Error::RecordTooLarge {
                bytes: body.len(),
                limit: CHECKPOINT_ENTRY_BYTES_MAX,
            });
        }
        count += 1;
        let before = buffer.len();
        encode_frame(&mut buffer, &seed, count, kind, &body);
        payload_bytes += (buffer.len() - before) as u64;
        if buffer.len() >= WRITE_CHUNK_BYTES {
            file.write_all(&buffer)
                .map_err(|error| Error::io("writing", temporary, error))?;
            written += buffer.len() as u64;
            buffer.clear();
        }
    }
    buffer.extend_from_slice(&encode_trailer(&seed, count, payload_bytes));
    file.write_all(&buffer)
        .map_err(|error| Error::io("writing", temporary, error))?;
    written += buffer.len() as u64;
    file.sync_all()
        .map_err(|error| Error::io("syncing", temporary, error))?;
    Ok((count, written))
}

/// A checkpoint file read into memory and verified whole; iterating yields its entries.
pub struct CheckpointReader {
    info: CheckpointInfo,
    bytes: Vec<u8>,
    offset: usize,
    end: usize,
    sequence: u64,
    seed: crc32fast::Hasher,
}

impl std::fmt::Debug for CheckpointReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointReader")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// Where a checkpoint stops verifying (the offset in the file), and why.
type Damaged<T> = std::result::Result<T, (usize, String)>;

/// Checks the checkpoint's size, magic, header checksum, version and LSN (the one its
/// name says); returns the log id it was written for.
fn verify_header(bytes: &[u8], lsn: u64) -> Damaged<[u8; 16]> {
    if bytes.len() < CHECKPOINT_HEADER_BYTES + CHECKPOINT_TRAILER_BYTES {
        return Err((
            0,
            format!(
                "checkpoint is {} bytes, shorter than its header and trailer",
                bytes.len()
            ),
        ));
    }
    if bytes[0..8] != CHECKPOINT_MAGIC {
        return Err((0, "bad checkpoint magic".to_string()));
    }
    if crc32fast::hash(&bytes[0..60]) != u32::from_le_bytes(word(bytes, 60)) {
        return Err((0, "checkpoint header checksum mismatch".to_string()));
    }
    let version = u32::from_le_bytes(word(bytes, 8));
    if version != CHECKPOINT_VERSION {
        return Err((
            8,
            format!("checkpoint version {version}, this build reads {CHECKPOINT_VERSION}"),
        ));
    }
    let header_lsn = u64::from_le_bytes(word(bytes, 32));
    if header_lsn != lsn {
        return Err((
            32,
            format!("checkpoint header says LSN {header_lsn}, its name says {lsn}"),
        ));
    }
    Ok(word(bytes, 16))
}

/// Checks the trailer (the header is verified, so the file is long enough for one);
/// returns where the entries end and how many the trailer announces.
fn verify_trailer(bytes: &[u8], seed: &crc32fast::Hasher) -> Damaged<(usize, u64)> {
    let end = bytes.len() - CHECKPOINT_TRAILER_BYTES;
    let trailer = &bytes[end..];
    let mut hasher = seed.clone();
    hasher.update(&trailer[0..28]);
    if trailer[0..8] != TRAILER_MAGIC
        || trailer[24..28] != [0; 4]
        || hasher.finalize() != u32::from_le_bytes(word(trailer, 28))
    {
        return Err((end, "checkpoint trailer does not verify".to_string()));
    }
    let entries = u64::from_le_bytes(word(trailer, 8));
    let payload_bytes = u64::from_le_bytes(word(trailer, 16));
    if payload_bytes != (end - CHECKPOINT_HEADER_BYTES) as u64 {
        return Err((
            end,
            format!(
                "checkpoint trailer announces {payload_bytes} bytes of entries, the file holds {}",
                end - CHECKPOINT_HEADER_BYTES
            ),
        ));
    }
    Ok((end, entries))
}

/// Checks every entry between the header and `end`, and that there are `entries` of them.
fn verify_entries(bytes: &[u8], end: usize, seed: &crc32fast::Hasher, entries: u64) -> Damaged<()> {
    let mut count = 0u64;
    let mut offset = CHECKPOINT_HEADER_BYTES;
    while offset < end {
        let (_, used) = decode_frame(
            &bytes[offset..end],
            seed,
            count + 1,
            CHECKPOINT_ENTRY_BYTES_MAX,
        )
        .map_err(|error| (offset, error.to_string()))?;
        offset += used;
        count += 1;
    }
    if count != entries {
        return Err((
            end,
            format!("checkpoint holds {count} entries, its trailer says {entries}"),
        ));
    }
    Ok(())
}

impl CheckpointReader {
    /// Reads and verifies the checkpoint at `path` (named for `lsn`): header, every entry
    /// and the trailer. Any damage is corruption naming the file and offset.
    pub(crate) fn open(fs: &dyn FileSystem, path: &Path, lsn: u64) -> Result<CheckpointReader> {
        let bytes = fs
            .read(path)
            .map_err(|error| Error::io("reading", path, error))?;
        let corrupt =
            |(offset, reason): (usize, String)| Error::corruption(path, offset as u64, reason);
        let log_id = verify_header(&bytes, lsn).map_err(corrupt)?;
        let seed = seed(&log_id, lsn);
        let (end, entries) = verify_trailer(&bytes, &seed).map_err(corrupt)?;
        // Verify every entry now, so a damaged checkpoint refuses the open before anything
        // is changed or replayed.
        verify_entries(&bytes, end, &seed, entries).map_err(corrupt)?;
        Ok(CheckpointReader {
            info: CheckpointInfo {
                path: path.to_path_buf(),
                lsn,
                entries,
                bytes: bytes.len() as u64,
            },
            offset: CHECKPOINT_HEADER_BYTES,
            end,
            sequence: 1,
            seed,
            bytes,
        })
    }

    /// The log id the checkpoint was written for.
    pub(crate) fn log_id(&self) -> [u8; 16] {
        word(&self.bytes, 16)
    }

    pub fn info(&self) -> &CheckpointInfo {
        &self.info
    }
}

impl Iterator for CheckpointReader {
    /// An entry's kind and body.
    type Item = Result<(u8, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.offset >= self.end {
            return None;
        }
        match decode_frame(
            &self.bytes[self.offset..self.end],
            &self.seed,
            self.sequence,
            CHECKPOINT_ENTRY_BYTES_MAX,
        ) {
            Ok((frame, used)) => {
                let entry = (frame.kind, frame.body.to_vec());
                self.offset += used;
                self.sequence += 1;
                Some(Ok(entry))
            }
            Err(error) => {
                let offset = self.offset;
                self.offset = self.end;
                Some(Err(Error::corruption(
                    &self.info.path,
                    offset as u64,
                    error.to_string(),
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_names_table() {
        let check = |name: &str, expected: Option<u64>| {
            assert_eq!(parse_checkpoint_file_name(name), expected, "{name}")
        };
        check("checkpoint-00000000000000000042.ckpt", Some(42));
        check(&checkpoint_file_name(u64::MAX), Some(u64::MAX));
        check("checkpoint-42.ckpt", None);
        check("checkpoint-00000000000000000042.ckpt.tmp", None);
        check("00000000000000000042.wal", None);
        assert!(is_temporary("checkpoint-00000000000000000042.ckpt.tmp"));
        assert!(!is_temporary("checkpoint-00000000000000000042.ckpt"));
    }
}
