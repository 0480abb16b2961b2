//! A handle on a simulated file: writes at its position (over existing bytes, remembering
//! what a crash may revert, or past the end), syncs, and the operation count and faults
//! every handle operation goes through.

use std::io;
use std::path::PathBuf;

use super::{
    dead_process, error_of, Overwrite, SimError, SimFile, SimFileSystem, SimOp, SECTOR_BYTES,
};
use crate::fs::WritableFile;

pub(super) struct SimHandle {
    pub(super) fs: SimFileSystem,
    pub(super) path: PathBuf,
    pub(super) generation: u64,
    /// Where the next write goes.
    pub(super) position: usize,
}

impl SimHandle {
    fn with_file<T>(
        &self,
        op: SimOp,
        action: impl FnOnce(&mut SimFile, Option<u64>) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut state = self.fs.state();
        if state.generation != self.generation {
            return Err(dead_process());
        }
        state.begin(op)?;
        let room = state
            .capacity_bytes
            .map(|capacity| capacity.saturating_sub(state.live_bytes()));
        match state.files.get_mut(&self.path) {
            Some(file) => action(file, room),
            None => Err(io::Error::new(io::ErrorKind::NotFound, "file vanished")),
        }
    }
}

impl WritableFile for SimHandle {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        let position = self.position;
        let written = self.with_file(SimOp::Write, |file, room| {
            let growth = (position + bytes.len()).saturating_sub(file.data.len());
            let fits = match room {
                Some(room) if growth as u64 > room => bytes.len() - (growth - room as usize),
                _ => bytes.len(),
            };
            file.write_at(position, &bytes[..fits]);
            if fits < bytes.len() {
                return Err(error_of(SimError::Enospc));
            }
            Ok(fits)
        })?;
        self.position += written;
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.with_file(SimOp::Sync, |file, _| {
            file.durable_len = file.data.len();
            file.old_sectors.clear();
            Ok(())
        })
    }

    fn sync_all(&mut self) -> io::Result<()> {
        self.sync_data()
    }

    /// Not an operation (no count, no fault): `fstat` changes nothing on disk.
    fn file_len(&self) -> io::Result<u64> {
        let state = self.fs.state();
        if state.generation != self.generation {
            return Err(dead_process());
        }
        match state.files.get(&self.path) {
            Some(file) => Ok(file.data.len() as u64),
            None => Err(io::Error::new(io::ErrorKind::NotFound, "file vanished")),
        }
    }
}

impl SimFile {
    /// Writes `bytes` at `position`: over the existing bytes (remembering, per sector, the
    /// durable bytes they replace), then past the end. A gap past the end reads as zeros.
    fn write_at(&mut self, position: usize, bytes: &[u8]) {
        let end = position + bytes.len();
        let overwritten_end = end.min(self.durable_len);
        if position < overwritten_end {
            let first = position / SECTOR_BYTES;
            let last = (overwritten_end - 1) / SECTOR_BYTES;
            for sector in first..=last {
                let start = sector * SECTOR_BYTES;
                let from = position.max(start);
                let to = overwritten_end.min(start + SECTOR_BYTES);
                let durable_end = (start + SECTOR_BYTES).min(self.durable_len);
                let data = &self.data;
                let entry = self.old_sectors.entry(sector).or_insert_with(|| Overwrite {
                    from,
                    to,
                    old: data[start..durable_end].to_vec(),
                });
                entry.from = entry.from.min(from);
                entry.to = entry.to.max(to);
            }
        }
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        self.data[position..end].copy_from_slice(bytes);
    }
}
