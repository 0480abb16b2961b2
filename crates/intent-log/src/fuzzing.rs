//! Entry points for the fuzz targets in `fuzz/`, also run over the committed corpus by an
//! ordinary test so CI exercises them.

use crate::format::{decode_batch, SegmentHeader, SEGMENT_HEADER_BYTES};

/// What decoding an arbitrary segment image produced.
#[derive(Debug, Default)]
pub struct DecodedSegment {
    pub header_valid: bool,
    pub records: usize,
    pub body_bytes: usize,
    /// Offset of the first byte that did not verify, if any.
    pub first_bad_offset: Option<usize>,
}

/// Decodes `bytes` as one segment: the header, then frames until the first one that does
/// not verify. Never panics, never allocates more than the input, and returns no record
/// after the first bad one.
pub fn decode_segment_bytes(bytes: &[u8]) -> DecodedSegment {
    let mut decoded = DecodedSegment::default();
    let header = match SegmentHeader::decode(bytes) {
        Ok(header) => header,
        Err(_) => {
            decoded.first_bad_offset = Some(0);
            return decoded;
        }
    };
    decoded.header_valid = true;
    let seed = header.frame_hasher();
    let mut offset = SEGMENT_HEADER_BYTES;
    let mut lsn = header.first_lsn;
    while offset < bytes.len() {
        match decode_batch(
            bytes,
            offset,
            &seed,
            lsn,
            crate::options::RECORD_BYTES_MAX_LIMIT,
        ) {
            Ok(batch) => {
                decoded.records += batch.frames.len();
                decoded.body_bytes += batch
                    .frames
                    .iter()
                    .map(|frame| frame.body.len())
                    .sum::<usize>();
                offset = batch.end;
                lsn = lsn.wrapping_add(u64::from(batch.header.records));
            }
            Err(_) => {
                decoded.first_bad_offset = Some(offset);
                break;
            }
        }
    }
    decoded
}
