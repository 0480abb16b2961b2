//! The bytes on disk: the segment header and the record frame. `docs/wal-format.md`
//! documents the same layout to the byte; keep the two in step.
//!
//! Everything here is pure (no I/O) and never panics on arbitrary input: decoding checks
//! every length against the bytes that are left before it slices or allocates.

/// First eight bytes of every segment.
pub const SEGMENT_MAGIC: [u8; 8] = *b"INTENTWL";
/// Version of the segment, batch and frame layout. Bump on any change to this file.
/// Version 2 frames every batch (one write + one sync) with a batch header, so recovery
/// knows exactly where the last complete batch ends.
pub const FORMAT_VERSION: u32 = 2;
/// Size of the segment header; records start right after it.
pub const SEGMENT_HEADER_BYTES: usize = 64;
/// Size of a frame header; the body follows it.
pub const FRAME_HEADER_BYTES: usize = 20;
/// Size of a batch header; the batch's frames follow it.
pub const BATCH_HEADER_BYTES: usize = 32;
/// First four bytes of every batch header (found again when recovery searches past damage).
pub const BATCH_MAGIC: [u8; 4] = *b"IBAT";

/// The parsed segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Random id of the log, the same in every segment of one log.
    pub log_id: [u8; 16],
    /// Segment ids are contiguous within a log; a missing one is corruption.
    pub segment_id: u64,
    /// LSN of the first record of this segment (also its file name).
    pub first_lsn: u64,
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_BYTES] {
        let mut bytes = [0u8; SEGMENT_HEADER_BYTES];
        bytes[0..8].copy_from_slice(&SEGMENT_MAGIC);
        bytes[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes[12..16].copy_from_slice(&(SEGMENT_HEADER_BYTES as u32).to_le_bytes());
        bytes[16..32].copy_from_slice(&self.log_id);
        bytes[32..40].copy_from_slice(&self.segment_id.to_le_bytes());
        bytes[40..48].copy_from_slice(&self.first_lsn.to_le_bytes());
        // 48..60 reserved, zero.
        let crc = crc32fast::hash(&bytes[0..60]);
        bytes[60..64].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// Parses and verifies a segment header from the start of `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<SegmentHeader, String> {
        let Some(header) = bytes.get(..SEGMENT_HEADER_BYTES) else {
            return Err(format!(
                "segment is {} bytes, shorter than its {SEGMENT_HEADER_BYTES}-byte header",
                bytes.len()
            ));
        };
        if header[0..8] != SEGMENT_MAGIC {
            return Err("bad segment magic".to_string());
        }
        let stored_crc = read_u32(header, 60);
        if crc32fast::hash(&header[0..60]) != stored_crc {
            return Err("segment header checksum mismatch".to_string());
        }
        let version = read_u32(header, 8);
        if version != FORMAT_VERSION {
            return Err(format!(
                "segment format version {version}, this build reads version {FORMAT_VERSION}"
            ));
        }
        if read_u32(header, 12) as usize != SEGMENT_HEADER_BYTES {
            return Err("unexpected segment header length".to_string());
        }
        let mut log_id = [0u8; 16];
        log_id.copy_from_slice(&header[16..32]);
        Ok(SegmentHeader {
            log_id,
            segment_id: read_u64(header, 32),
            first_lsn: read_u64(header, 40),
        })
    }

    /// The checksum state every frame of this segment starts from: seeding with the log id
    /// and segment id means a stale record from another segment or another log never
    /// verifies here.
    pub fn frame_hasher(&self) -> crc32fast::Hasher {
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&self.log_id);
        hasher.update(&self.segment_id.to_le_bytes());
        hasher
    }
}

/// A batch header: what one write + one sync of the writer carried. `records` frames
/// follow it, taking exactly `payload_bytes`; the first carries `first_lsn`. A batch with
/// no records is a seal, written at a clean close so the batch before it is no longer the
/// last one (only the last batch of a log can be torn).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub payload_bytes: u32,
    pub first_lsn: u64,
    pub records: u32,
}

impl BatchHeader {
    /// The header's bytes; its checksum is seeded like the frames' (log id, segment id).
    pub fn encode(&self, seed: &crc32fast::Hasher) -> [u8; BATCH_HEADER_BYTES] {
        let mut bytes = [0u8; BATCH_HEADER_BYTES];
        bytes[0..4].copy_from_slice(&BATCH_MAGIC);
        bytes[4..8].copy_from_slice(&self.payload_bytes.to_le_bytes());
        bytes[8..16].copy_from_slice(&self.first_lsn.to_le_bytes());
        bytes[16..20].copy_from_slice(&self.records.to_le_bytes());
        // 20..28 reserved, zero.
        let mut hasher = seed.clone();
        hasher.update(&bytes[0..28]);
        bytes[28..32].copy_from_slice(&hasher.finalize().to_le_bytes());
        bytes
    }

    /// Parses and verifies the batch header at the start of `bytes`.
    pub fn decode(bytes: &[u8], seed: &crc32fast::Hasher) -> Result<BatchHeader, FrameError> {
        let Some(header) = bytes.get(..BATCH_HEADER_BYTES) else {
            return Err(FrameError::Truncated);
        };
        if header[0..4] != BATCH_MAGIC || header[20..28] != [0; 8] {
            return Err(FrameError::BadHeader);
        }
        let mut hasher = seed.clone();
        hasher.update(&header[0..28]);
        if hasher.finalize() != read_u32(header, 28) {
            return Err(FrameError::Checksum);
        }
        Ok(BatchHeader {
            payload_bytes: read_u32(header, 4),
            first_lsn: read_u64(header, 8),
            records: read_u32(header, 16),
        })
    }
}

/// Where the next verifying batch header after `from` starts, if any: recovery's proof
/// that damage before it is not a torn tail (a batch is written only after the one before
/// it was synced, so bytes that verify after damage mean the damage hit synced bytes).
pub fn find_batch_header(bytes: &[u8], from: usize, seed: &crc32fast::Hasher) -> Option<usize> {
    let mut at = from;
    while at + BATCH_HEADER_BYTES <= bytes.len() {
        let window = &bytes[at..];
        let found = window
            .windows(BATCH_MAGIC.len())
            .position(|four| four == BATCH_MAGIC)?;
        let candidate = at + found;
        if BatchHeader::decode(&bytes[candidate..], seed).is_ok() {
            return Some(candidate);
        }
        at = candidate + 1;
    }
    None
}

/// A frame decoded from a segment, borrowing its body.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub lsn: u64,
    pub kind: u8,
    pub body: &'a [u8],
}

/// Appends one frame to `out`.
pub fn encode_frame(out: &mut Vec<u8>, seed: &crc32fast::Hasher, lsn: u64, kind: u8, body: &[u8]) {
    let mut header = [0u8; FRAME_HEADER_BYTES];
    header[0..4].copy_from_slice(&(body.len() as u32).to_le_bytes());
    header[8..16].copy_from_slice(&lsn.to_le_bytes());
    header[16] = kind;
    // 17..20 reserved, zero.
    let crc = frame_crc(seed, &header, body);
    header[4..8].copy_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(body);
}

fn frame_crc(seed: &crc32fast::Hasher, header: &[u8; FRAME_HEADER_BYTES], body: &[u8]) -> u32 {
    let mut hasher = seed.clone();
    hasher.update(&header[0..4]);
    hasher.update(&header[8..FRAME_HEADER_BYTES]);
    hasher.update(body);
    hasher.finalize()
}

/// Why a frame did not decode.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer bytes are left than a header or the body it announces.
    Truncated,
    /// The header's length field is larger than allowed.
    TooLong(u32),
    /// Kind 0 or non-zero reserved bytes: never written by the log.
    BadHeader,
    Checksum,
    /// The checksum verifies but the LSN is not the next one.
    LsnGap {
        expected: u64,
        found: u64,
    },
    /// A batch's frames do not fill exactly the bytes and count its header announces.
    BatchMismatch,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Truncated => write!(f, "truncated record"),
            FrameError::TooLong(len) => write!(f, "record length {len} exceeds the limit"),
            FrameError::BadHeader => {
                write!(f, "invalid record header (kind 0 or reserved bits set)")
            }
            FrameError::Checksum => write!(f, "record checksum mismatch"),
            FrameError::LsnGap { expected, found } => {
                write!(f, "LSN gap: expected {expected}, found {found}")
            }
            FrameError::BatchMismatch => {
                write!(f, "the batch's records do not match its header")
            }
        }
    }
}

/// Decodes the frame at the start of `bytes`, which must carry `expected_lsn`.
/// Returns the frame and the number of bytes it takes.
pub fn decode_frame<'a>(
    bytes: &'a [u8],
    seed: &crc32fast::Hasher,
    expected_lsn: u64,
    record_bytes_max: usize,
) -> Result<(Frame<'a>, usize), FrameError> {
    let Some(header_bytes) = bytes.get(..FRAME_HEADER_BYTES) else {
        return Err(FrameError::Truncated);
    };
    let mut header = [0u8; FRAME_HEADER_BYTES];
    header.copy_from_slice(header_bytes);
    let body_len = read_u32(&header, 0);
    if body_len as usize > record_bytes_max {
        return Err(FrameError::TooLong(body_len));
    }
    let kind = header[16];
    if kind == 0 || header[17..20] != [0, 0, 0] {
        return Err(FrameError::BadHeader);
    }
    let end = FRAME_HEADER_BYTES + body_len as usize;
    let Some(body) = bytes.get(FRAME_HEADER_BYTES..end) else {
        return Err(FrameError::Truncated);
    };
    if frame_crc(seed, &header, body) != read_u32(&header, 4) {
        return Err(FrameError::Checksum);
    }
    let lsn = read_u64(&header, 8);
    if lsn != expected_lsn {
        return Err(FrameError::LsnGap {
            expected: expected_lsn,
            found: lsn,
        });
    }
    Ok((Frame { lsn, kind, body }, end))
}

/// A batch decoded from a segment: its header, its frames, and where the next one starts.
#[derive(Debug)]
pub struct DecodedBatch<'a> {
    pub header: BatchHeader,
    pub frames: Vec<Frame<'a>>,
    /// Offset just past the batch's last byte.
    pub end: usize,
}

/// Decodes and verifies the whole batch at `offset` of a segment's `bytes`: its header,
/// that its first LSN is `expected_lsn`, that exactly `records` frames with contiguous
/// LSNs fill exactly `payload_bytes`, and every frame's checksum. Nothing is returned from
/// a batch that does not verify whole.
pub fn decode_batch<'a>(
    bytes: &'a [u8],
    offset: usize,
    seed: &crc32fast::Hasher,
    expected_lsn: u64,
    record_bytes_max: usize,
) -> Result<DecodedBatch<'a>, FrameError> {
    let rest = bytes.get(offset..).unwrap_or_default();
    let header = BatchHeader::decode(rest, seed)?;
    if header.first_lsn != expected_lsn {
        return Err(FrameError::LsnGap {
            expected: expected_lsn,
            found: header.first_lsn,
        });
    }
    let payload_start = offset + BATCH_HEADER_BYTES;
    let end = payload_start + header.payload_bytes as usize;
    let Some(payload) = bytes.get(payload_start..end) else {
        return Err(FrameError::Truncated);
    };
    let mut frames =
        Vec::with_capacity((header.records as usize).min(payload.len() / FRAME_HEADER_BYTES + 1));
    let mut at = 0;
    let mut lsn = expected_lsn;
    while at < payload.len() {
        if frames.len() as u64 >= u64::from(header.records) {
            return Err(FrameError::BatchMismatch);
        }
        let (frame, used) = decode_frame(&payload[at..], seed, lsn, record_bytes_max)?;
        frames.push(frame);
        at += used;
        lsn += 1;
    }
    if frames.len() as u64 != u64::from(header.records) {
        return Err(FrameError::BatchMismatch);
    }
    Ok(DecodedBatch {
        header,
        frames,
        end,
    })
}

/// The bytes one frame of `body_len` takes on disk.
pub const fn frame_bytes(body_len: usize) -> usize {
    FRAME_HEADER_BYTES + body_len
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    if let Some(slice) = bytes.get(at..at + 4) {
        word.copy_from_slice(slice);
    }
    u32::from_le_bytes(word)
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    if let Some(slice) = bytes.get(at..at + 8) {
        word.copy_from_slice(slice);
    }
    u64::from_le_bytes(word)
}

/// The file name of the segment whose first record is `first_lsn`.
pub fn segment_file_name(first_lsn: u64) -> String {
    format!("{first_lsn:020}.wal")
}

/// Parses a segment file name back into its first LSN.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".wal")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> SegmentHeader {
        SegmentHeader {
            log_id: [7; 16],
            segment_id: 3,
            first_lsn: 42,
        }
    }

    #[test]
    fn segment_header_round_trips() {
        assert_eq!(SegmentHeader::decode(&header().encode()), Ok(header()));
    }

    #[test]
    fn frame_round_trips_and_rejects_the_wrong_seed_or_lsn() {
        let seed = header().frame_hasher();
        let mut bytes = Vec::new();
        encode_frame(&mut bytes, &seed, 42, 5, b"hello");
        let (frame, used) = decode_frame(&bytes, &seed, 42, 1024).unwrap();
        assert_eq!(
            (frame.lsn, frame.kind, frame.body, used),
            (42, 5, &b"hello"[..], bytes.len())
        );
        assert_eq!(
            decode_frame(&bytes, &seed, 43, 1024).unwrap_err(),
            FrameError::LsnGap {
                expected: 43,
                found: 42
            }
        );
        let other = SegmentHeader {
            segment_id: 4,
            ..header()
        }
        .frame_hasher();
        assert_eq!(
            decode_frame(&bytes, &other, 42, 1024).unwrap_err(),
            FrameError::Checksum
        );
        let other_log = SegmentHeader {
            log_id: [8; 16],
            ..header()
        }
        .frame_hasher();
        assert_eq!(
            decode_frame(&bytes, &other_log, 42, 1024).unwrap_err(),
            FrameError::Checksum
        );
    }

    #[test]
    fn decode_frame_table() {
        let seed = header().frame_hasher();
        let check = |bytes: &[u8], expected: FrameError| {
            assert_eq!(
                decode_frame(bytes, &seed, 1, 64).unwrap_err(),
                expected,
                "{bytes:?}"
            );
        };
        check(&[], FrameError::Truncated);
        check(&[0; 19], FrameError::Truncated);
        check(&[0; 20], FrameError::BadHeader); // an all-zero header is never a record
        check(&[0; 64], FrameError::BadHeader);
        check(&[0xff; 64], FrameError::TooLong(u32::MAX));
        check(
            &[65, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0],
            FrameError::TooLong(65),
        );
        check(
            &[10, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0],
            FrameError::Truncated,
        );
        check(
            &[0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0],
            FrameError::BadHeader,
        );
        check(
            &[0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0],
            FrameError::Checksum,
        );
    }

    #[test]
    fn batch_header_round_trips_and_is_found_after_damage() {
        let seed = header().frame_hasher();
        let batch = BatchHeader {
            payload_bytes: 77,
            first_lsn: 42,
            records: 3,
        };
        let bytes = batch.encode(&seed);
        assert_eq!(BatchHeader::decode(&bytes, &seed), Ok(batch));
        let other = SegmentHeader {
            segment_id: 4,
            ..header()
        }
        .frame_hasher();
        assert_eq!(
            BatchHeader::decode(&bytes, &other),
            Err(FrameError::Checksum)
        );
        assert_eq!(
            BatchHeader::decode(&[0; 32], &seed),
            Err(FrameError::BadHeader)
        );
        assert_eq!(
            BatchHeader::decode(&bytes[..31], &seed),
            Err(FrameError::Truncated)
        );
        let mut damaged = vec![7u8; 50];
        damaged.extend_from_slice(b"IBATgarbage");
        damaged.extend_from_slice(&bytes);
        assert_eq!(find_batch_header(&damaged, 0, &seed), Some(61));
        assert_eq!(find_batch_header(&damaged, 62, &seed), None);
        for flip in 0..BATCH_HEADER_BYTES {
            let mut flipped = bytes;
            flipped[flip] ^= 0x10;
            assert!(BatchHeader::decode(&flipped, &seed).is_err(), "flip {flip}");
        }
    }

    #[test]
    fn segment_names_table() {
        let check = |name: &str, expected: Option<u64>| {
            assert_eq!(parse_segment_file_name(name), expected, "{name}")
        };
        check("00000000000000000001.wal", Some(1));
        check(&segment_file_name(u64::MAX), Some(u64::MAX));
        check("1.wal", None);
        check("0000000000000000000a.wal", None);
        check("00000000000000000001.wal.tmp", None);
        check("LOCK", None);
    }

    #[test]
    fn header_decode_rejects_damage() {
        let mut bytes = header().encode();
        bytes[33] ^= 1;
        assert!(SegmentHeader::decode(&bytes)
            .unwrap_err()
            .contains("checksum"));
        assert!(SegmentHeader::decode(&[0u8; 64])
            .unwrap_err()
            .contains("magic"));
        assert!(SegmentHeader::decode(&[0u8; 10])
            .unwrap_err()
            .contains("shorter"));
    }
}
