//! Container logs in the CRI format the kubelet reads
//! (`2026-01-02T03:04:05.123456789Z stdout F the line`), with size-based rotation, and the
//! reader behind `kubectl logs` (tail, since, timestamps).

use crate::state::now as timestamp;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// Lines longer than this are split into partial (`P`) records.
const MAX_LINE: usize = 16 * 1024;

/// Writes one container's output to its log file.
pub struct LogWriter {
    path: PathBuf,
    file: File,
    written: u64,
    max_bytes: u64,
    max_files: u32,
}

impl LogWriter {
    /// Opens (appending to) the log at `path`.
    pub fn open(path: &Path, max_bytes: u64, max_files: u32) -> std::io::Result<LogWriter> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = File::options().create(true).append(true).open(path)?;
        let written = file.metadata()?.len();
        Ok(LogWriter {
            path: path.to_path_buf(),
            file,
            written,
            max_bytes,
            max_files,
        })
    }

    /// Writes one record.
    pub fn record(&mut self, stream: &str, partial: bool, line: &[u8]) -> std::io::Result<()> {
        let mut rec = Vec::with_capacity(line.len() + 48);
        rec.extend_from_slice(timestamp().as_bytes());
        rec.push(b' ');
        rec.extend_from_slice(stream.as_bytes());
        rec.extend_from_slice(if partial { b" P " } else { b" F " });
        rec.extend_from_slice(line);
        rec.push(b'\n');
        self.file.write_all(&rec)?;
        self.written += rec.len() as u64;
        if self.max_bytes > 0 && self.written > self.max_bytes {
            self.rotate()?;
        }
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let name = |i: u32| PathBuf::from(format!("{}.{i}", self.path.display()));
        if self.max_files <= 1 {
            self.file.set_len(0)?;
        } else {
            for i in (1..self.max_files - 1).rev() {
                let _ = std::fs::rename(name(i), name(i + 1));
            }
            std::fs::rename(&self.path, name(1))?;
            self.file = File::options().create(true).append(true).open(&self.path)?;
        }
        self.written = 0;
        Ok(())
    }
}

/// Splits a stream's bytes into records.
#[derive(Default)]
pub struct LineSplitter {
    buf: Vec<u8>,
}

impl LineSplitter {
    /// Feeds bytes; calls `emit(partial, line)` for each complete record.
    pub fn feed(
        &mut self,
        bytes: &[u8],
        mut emit: impl FnMut(bool, &[u8]) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        self.buf.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(pos) = self.buf[start..].iter().position(|b| *b == b'\n') {
            emit(false, &self.buf[start..start + pos])?;
            start += pos + 1;
        }
        while self.buf.len() - start >= MAX_LINE {
            emit(true, &self.buf[start..start + MAX_LINE])?;
            start += MAX_LINE;
        }
        self.buf.drain(..start);
        Ok(())
    }

    /// Emits what is left at end of stream: a last line with no newline, kept partial (`P`)
    /// so that readers give it back without one, as containerd writes it.
    pub fn finish(
        &mut self,
        mut emit: impl FnMut(bool, &[u8]) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            emit(true, &self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
}

/// One parsed log record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub time: jiff::Timestamp,
    /// The RFC 3339 time as written.
    pub time_text: String,
    pub stream: String,
    pub partial: bool,
    pub content: Vec<u8>,
}

/// Parses one line of a CRI log file.
pub fn parse(line: &[u8]) -> Option<Record> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let time_text = std::str::from_utf8(parts.next()?).ok()?.to_string();
    let stream = std::str::from_utf8(parts.next()?).ok()?.to_string();
    let tag = parts.next()?;
    let content = parts.next().unwrap_or_default().to_vec();
    Some(Record {
        time: time_text.parse().ok()?,
        time_text,
        stream,
        partial: tag.first() == Some(&b'P'),
        content,
    })
}

/// Options of a log read.
#[derive(Clone, Debug, Default)]
pub struct ReadOptions {
    /// Only the last N lines.
    pub tail: Option<usize>,
    /// Only records at or after this time.
    pub since: Option<jiff::Timestamp>,
    /// Prefix each line with its time.
    pub timestamps: bool,
    /// Stop after this many bytes.
    pub limit_bytes: Option<usize>,
}

/// The files of a log, oldest first (rotated ones before the current one).
pub fn files(path: &Path) -> Vec<PathBuf> {
    let mut rotated: Vec<(u32, PathBuf)> = Vec::new();
    if let (Some(dir), Some(name)) = (path.parent(), path.file_name()) {
        let prefix = format!("{}.", name.to_string_lossy());
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let n = e.file_name().to_string_lossy().to_string();
                if let Some(i) = n.strip_prefix(&prefix).and_then(|s| s.parse().ok()) {
                    rotated.push((i, e.path()));
                }
            }
        }
    }
    rotated.sort_by_key(|r| std::cmp::Reverse(r.0));
    let mut out: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    out.push(path.to_path_buf());
    out
}

/// Renders one record as `kubectl logs` prints it.
pub fn render(rec: &Record, timestamps: bool, out: &mut Vec<u8>) {
    if timestamps {
        out.extend_from_slice(rec.time_text.as_bytes());
        out.push(b' ');
    }
    out.extend_from_slice(&rec.content);
    if !rec.partial {
        out.push(b'\n');
    }
}

/// Reads a whole log (all its files) as `kubectl logs` shows it.
pub fn read(path: &Path, opts: &ReadOptions) -> std::io::Result<Vec<u8>> {
    let mut records = Vec::new();
    for f in files(path) {
        let Ok(file) = File::open(&f) else { continue };
        for line in BufReader::new(file).split(b'\n') {
            if let Some(rec) = parse(&line?)
                && opts.since.is_none_or(|s| rec.time >= s)
            {
                records.push(rec);
            }
        }
    }
    if let Some(n) = opts.tail {
        // The last n records, partial or not, as the kubelet counts the file's lines.
        records.drain(..records.len().saturating_sub(n));
    }
    let mut out = Vec::new();
    for r in &records {
        render(r, opts.timestamps, &mut out);
        if opts.limit_bytes.is_some_and(|l| out.len() >= l) {
            out.truncate(opts.limit_bytes.unwrap_or(out.len()));
            break;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_written_split_and_read_back() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("0.log");
        let mut w = LogWriter::open(&path, 0, 1).expect("open");
        let mut s = LineSplitter::default();
        s.feed(b"one\ntw", |p, l| w.record("stdout", p, l))
            .expect("feed");
        s.feed(b"o\nthree", |p, l| w.record("stderr", p, l))
            .expect("feed");
        s.finish(|p, l| w.record("stderr", p, l)).expect("finish");
        let all = read(&path, &ReadOptions::default()).expect("read");
        // The last line had no newline: it stays partial and comes back without one.
        assert_eq!(all, b"one\ntwo\nthree");
        let file = std::fs::read_to_string(&path).expect("log");
        assert!(file.ends_with(" stderr P three\n"), "{file}");
        let tail = read(
            &path,
            &ReadOptions {
                tail: Some(2),
                ..Default::default()
            },
        )
        .expect("read");
        assert_eq!(tail, b"two\nthree");
        let stamped = read(
            &path,
            &ReadOptions {
                tail: Some(1),
                timestamps: true,
                ..Default::default()
            },
        )
        .expect("read");
        let text = String::from_utf8(stamped).expect("utf8");
        let (time, rest) = text.split_once(' ').expect("a timestamp");
        assert!(time.parse::<jiff::Timestamp>().is_ok(), "{time}");
        assert_eq!(rest, "three");
    }

    #[test]
    fn long_lines_become_partial_records_and_read_back_whole() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("0.log");
        let mut w = LogWriter::open(&path, 0, 1).expect("open");
        let mut s = LineSplitter::default();
        let long = vec![b'x'; MAX_LINE + 10];
        s.feed(&long, |p, l| w.record("stdout", p, l))
            .expect("feed");
        s.feed(b"\n", |p, l| w.record("stdout", p, l))
            .expect("feed");
        let text = std::fs::read_to_string(&path).expect("log");
        assert!(text.lines().next().is_some_and(|l| l.contains(" P ")));
        let mut want = long.clone();
        want.push(b'\n');
        assert_eq!(read(&path, &ReadOptions::default()).expect("read"), want);
    }

    #[test]
    fn rotation_keeps_the_newest_files() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("0.log");
        let mut w = LogWriter::open(&path, 200, 3).expect("open");
        for i in 0..40 {
            w.record("stdout", false, format!("line {i}").as_bytes())
                .expect("write");
        }
        let files = files(&path);
        assert_eq!(files.len(), 3, "{files:?}");
        let text =
            String::from_utf8(read(&path, &ReadOptions::default()).expect("read")).expect("utf8");
        assert!(text.ends_with("line 39\n"));
        assert!(
            !text.contains("line 0\n"),
            "the oldest lines were rotated away"
        );
    }
}
