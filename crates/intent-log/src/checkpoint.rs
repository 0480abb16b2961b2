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

use std::io::Read;
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

/// A checkpoint verified whole when opened, then read a piece at a time: iterating yields
/// its entries without the file ever being in memory (a checkpoint holds every finished
/// intent inside the key-retention window, which can be gigabytes).
pub struct CheckpointReader {
    info: CheckpointInfo,
    log_id: [u8; 16],
    /// Opened before verification began, so the file verified is the file read, even if
    /// it is deleted meanwhile (compaction reads the previous checkpoint while writing
    /// the next).
    entries: FrameStream,
}

impl std::fmt::Debug for CheckpointReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointReader")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// Where a checkpoint stops verifying (the offset in the file), and why.
type Damaged<T> = std::result::Result<T, (u64, String)>;

/// Why reading a checkpoint stopped: damage at an offset, or the file could not be read.
enum Fault {
    Damaged(u64, String),
    Io(std::io::Error),
}

impl From<(u64, String)> for Fault {
    fn from((offset, reason): (u64, String)) -> Fault {
        Fault::Damaged(offset, reason)
    }
}

impl Fault {
    fn into_error(self, path: &Path) -> Error {
        match self {
            Fault::Damaged(offset, reason) => Error::corruption(path, offset, reason),
            Fault::Io(error) => Error::io("reading", path, error),
        }
    }
}

/// Checks the checkpoint's size, magic, header checksum, version and LSN (the one its
/// name says); returns the log id it was written for.
fn verify_header(header: &[u8], file_len: u64, lsn: u64) -> Damaged<[u8; 16]> {
    if file_len < (CHECKPOINT_HEADER_BYTES + CHECKPOINT_TRAILER_BYTES) as u64
        || header.len() < CHECKPOINT_HEADER_BYTES
    {
        return Err((
            0,
            format!("checkpoint is {file_len} bytes, shorter than its header and trailer"),
        ));
    }
    if header[0..8] != CHECKPOINT_MAGIC {
        return Err((0, "bad checkpoint magic".to_string()));
    }
    if crc32fast::hash(&header[0..60]) != u32::from_le_bytes(word(header, 60)) {
        return Err((0, "checkpoint header checksum mismatch".to_string()));
    }
    let version = u32::from_le_bytes(word(header, 8));
    if version != CHECKPOINT_VERSION {
        return Err((
            8,
            format!("checkpoint version {version}, this build reads {CHECKPOINT_VERSION}"),
        ));
    }
    let header_lsn = u64::from_le_bytes(word(header, 32));
    if header_lsn != lsn {
        return Err((
            32,
            format!("checkpoint header says LSN {header_lsn}, its name says {lsn}"),
        ));
    }
    Ok(word(header, 16))
}

/// Checks the trailer (found at `end`, where the entries stop); returns how many entries
/// it announces.
fn verify_trailer(trailer: &[u8], end: u64, seed: &crc32fast::Hasher) -> Damaged<u64> {
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
    let held = end - CHECKPOINT_HEADER_BYTES as u64;
    if payload_bytes != held {
        return Err((
            end,
            format!(
                "checkpoint trailer announces {payload_bytes} bytes of entries, the file holds {held}"
            ),
        ));
    }
    Ok(entries)
}

/// Bytes read from the file at a time.
const READ_CHUNK_BYTES: usize = 1 << 20;

/// The entries of a checkpoint file, read and checked one frame at a time between the
/// header and `end` (where the trailer starts).
struct FrameStream {
    file: Box<dyn Read + Send>,
    buffer: Vec<u8>,
    /// How much of `buffer` is consumed.
    start: usize,
    /// The file offset of `buffer[start]`.
    offset: u64,
    end: u64,
    /// The sequence number the next entry must carry.
    sequence: u64,
    seed: crc32fast::Hasher,
}

impl FrameStream {
    /// Reads the header from `file` and checks it; the stream starts at the first entry.
    fn open(
        mut file: Box<dyn Read + Send>,
        file_len: u64,
        lsn: u64,
    ) -> std::result::Result<(FrameStream, [u8; 16]), Fault> {
        let mut header = [0u8; CHECKPOINT_HEADER_BYTES];
        let read = read_full(file.as_mut(), &mut header)?;
        let log_id = verify_header(&header[..read], file_len, lsn)?;
        let stream = FrameStream {
            file,
            buffer: Vec::new(),
            start: 0,
            offset: CHECKPOINT_HEADER_BYTES as u64,
            end: file_len - CHECKPOINT_TRAILER_BYTES as u64,
            sequence: 1,
            seed: seed(&log_id, lsn),
        };
        Ok((stream, log_id))
    }

    /// Makes `buffer[start..]` hold at least `need` bytes (never past `end`).
    fn fill(&mut self, need: usize) -> std::result::Result<(), Fault> {
        let held = self.buffer.len() - self.start;
        if held >= need {
            return Ok(());
        }
        self.buffer.drain(..self.start);
        self.start = 0;
        let unread = self.end - self.offset - held as u64;
        let want = (need - held).max(READ_CHUNK_BYTES) as u64;
        let want = want.min(unread) as usize;
        let from = self.buffer.len();
        self.buffer.resize(from + want, 0);
        let read = read_full(self.file.as_mut(), &mut self.buffer[from..])?;
        self.buffer.truncate(from + read);
        // Only what this frame needs must be there: the bytes before a short read are
        // still whole entries.
        if held + read < need {
            return Err(Fault::Damaged(
                self.offset + (held + read) as u64,
                "the checkpoint file ended early (it changed while being read)".to_string(),
            ));
        }
        Ok(())
    }

    /// The next entry, or `None` at `end`.
    fn next_frame(&mut self) -> std::result::Result<Option<(u8, Vec<u8>)>, Fault> {
        if self.offset >= self.end {
            return Ok(None);
        }
        let remaining = usize::try_from(self.end - self.offset).unwrap_or(usize::MAX);
        self.fill(FRAME_HEADER_BYTES.min(remaining))?;
        let body_len = u32::from_le_bytes(word(&self.buffer[self.start..], 0)) as usize;
        if body_len <= CHECKPOINT_ENTRY_BYTES_MAX {
            self.fill((FRAME_HEADER_BYTES + body_len).min(remaining))?;
        }
        let available = (self.buffer.len() - self.start).min(remaining);
        let (frame, used) = decode_frame(
            &self.buffer[self.start..self.start + available],
            &self.seed,
            self.sequence,
            CHECKPOINT_ENTRY_BYTES_MAX,
        )
        .map_err(|error| Fault::Damaged(self.offset, error.to_string()))?;
        let entry = (frame.kind, frame.body.to_vec());
        self.start += used;
        self.offset += used as u64;
        self.sequence += 1;
        Ok(Some(entry))
    }

    /// Reads the trailer that follows the entries (call once `next_frame` returned `None`).
    fn trailer(&mut self) -> std::result::Result<[u8; CHECKPOINT_TRAILER_BYTES], Fault> {
        let mut trailer = [0u8; CHECKPOINT_TRAILER_BYTES];
        let read = read_full(self.file.as_mut(), &mut trailer)?;
        if read < CHECKPOINT_TRAILER_BYTES {
            return Err(Fault::Damaged(
                self.end,
                "the checkpoint file ended early (it changed while being read)".to_string(),
            ));
        }
        Ok(trailer)
    }
}

/// Reads until `buffer` is full or the file ends; returns how much was read.
fn read_full(file: &mut (dyn Read + Send), buffer: &mut [u8]) -> std::result::Result<usize, Fault> {
    let mut read = 0;
    while read < buffer.len() {
        match file.read(&mut buffer[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(Fault::Io(error)),
        }
    }
    Ok(read)
}

/// Checks every entry of `stream` and the trailer after them.
fn verify_entries(stream: &mut FrameStream) -> std::result::Result<u64, Fault> {
    let mut count = 0u64;
    while stream.next_frame()?.is_some() {
        count += 1;
    }
    let trailer = stream.trailer()?;
    let entries = verify_trailer(&trailer, stream.end, &stream.seed)?;
    if count != entries {
        return Err(Fault::Damaged(
            stream.end,
            format!("checkpoint holds {count} entries, its trailer says {entries}"),
        ));
    }
    Ok(entries)
}

impl CheckpointReader {
    /// Verifies the checkpoint at `path` (named for `lsn`): header, every entry and the
    /// trailer, reading it through once a piece at a time. Any damage is corruption naming
    /// the file and offset, and an I/O error is an I/O error; the entries are then read
    /// again (and checked again) as the caller iterates.
    pub(crate) fn open(fs: &dyn FileSystem, path: &Path, lsn: u64) -> Result<CheckpointReader> {
        let open = || {
            fs.open_read(path)
                .map_err(|error| Error::io("reading", path, error))
        };
        let failed = |fault: Fault| fault.into_error(path);
        let (entries_file, file_len) = open()?;
        let (verify_file, verify_len) = open()?;
        if verify_len != file_len {
            return Err(Error::corruption(
                path,
                0,
                "the checkpoint file changed size while being opened",
            ));
        }
        let (mut verifying, log_id) =
            FrameStream::open(verify_file, file_len, lsn).map_err(failed)?;
        // Verify every entry now, so a damaged checkpoint refuses the open before anything
        // is changed or replayed.
        let count = verify_entries(&mut verifying).map_err(failed)?;
        let (entries, _) = FrameStream::open(entries_file, file_len, lsn).map_err(failed)?;
        Ok(CheckpointReader {
            info: CheckpointInfo {
                path: path.to_path_buf(),
                lsn,
                entries: count,
                bytes: file_len,
            },
            log_id,
            entries,
        })
    }

    /// The log id the checkpoint was written for.
    pub(crate) fn log_id(&self) -> [u8; 16] {
        self.log_id
    }

    pub fn info(&self) -> &CheckpointInfo {
        &self.info
    }

    /// Bytes the reader holds in memory (its read buffer), for the tests that show a
    /// checkpoint is never read whole.
    #[cfg(test)]
    pub(crate) fn buffered_bytes(&self) -> usize {
        self.entries.buffer.capacity()
    }
}

impl Iterator for CheckpointReader {
    /// An entry's kind and body.
    type Item = Result<(u8, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.entries.next_frame() {
            Ok(entry) => entry.map(Ok),
            Err(fault) => {
                // Stop here: the rest cannot be trusted to follow on.
                self.entries.offset = self.entries.end;
                Some(Err(fault.into_error(&self.info.path)))
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
