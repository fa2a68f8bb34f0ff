//! The access log: one JSON line per request, written by a thread of its own so a worker never
//! waits on a disk or a pipe.
//!
//! Workers hand each [`Entry`] to a bounded channel ([`QUEUE`] entries) and go on; when the
//! writer falls that far behind, entries are dropped and counted
//! (`gateway_access_log_dropped_total`) rather than slowing requests down. The writer
//! serializes, buffers, and flushes when the channel runs dry. A file is reopened on request
//! ([`AccessLog::reopen`], on SIGUSR1) after a rotation tool moved it: lines written before the
//! reopen are in the old file, every later line in the new one, none lost.

use super::metrics;
use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;

/// Entries queued for the writer before new ones are dropped.
const QUEUE: usize = 65_536;

/// How long the writer sleeps once the queue is empty. It polls rather than blocks: a
/// blocked receiver makes every send a futex wake-up on the worker (that cost ~40% of the
/// no-plugin requests per CPU-second in run 10), a sleeping one costs the workers nothing.
/// At 65,536 entries the queue holds far more than this interval's lines.
const POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// Where lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Standard output.
    Stdout,
    /// A file, appended to (and reopened on SIGUSR1).
    File(PathBuf),
}

/// One request, as logged.
#[derive(Debug, Serialize)]
pub struct Entry {
    /// When the response head was sent (RFC 3339, UTC, milliseconds): formatted from `at` by
    /// the writer thread, not on the worker.
    pub time: String,
    /// When the response head was sent.
    #[serde(skip)]
    pub at: std::time::SystemTime,
    /// The request id (`X-Request-Id`).
    pub request_id: String,
    /// The W3C trace id, when the request is traced.
    pub trace_id: Option<String>,
    /// The matched route, `null` when none matched.
    pub route: Option<String>,
    /// Request method.
    pub method: String,
    /// Request path (normalized by the edge when it got that far).
    pub path: String,
    /// The query string, only with `query = true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Response status.
    pub status: u16,
    /// Request body bytes (declared length; `null` when streamed without one).
    pub bytes_in: Option<u64>,
    /// Response body bytes (`null` when streamed without a known length).
    pub bytes_out: Option<u64>,
    /// From the request head to the response head, in milliseconds.
    pub duration_ms: f64,
    /// Waiting on the upstream for its response head, in milliseconds.
    pub upstream_ms: Option<f64>,
    /// In plugin calls, in milliseconds.
    pub plugin_ms: Option<f64>,
    /// The client's address (behind trusted proxies: the client they name).
    pub client: String,
    /// The consumer an auth plugin identified (context value `consumer`).
    pub consumer: Option<String>,
    /// The upstream target that answered.
    pub upstream: Option<String>,
    /// The gateway's error code when it answered with an error itself.
    pub error: Option<&'static str>,
    /// The plugin that answered the request itself, if one did.
    pub answered_by: Option<String>,
}

enum Message {
    Line(Box<Entry>),
    Reopen,
    Flush(mpsc::Sender<()>),
}

/// A running access log.
pub struct AccessLog {
    sender: SyncSender<Message>,
    /// Ends when `sender` is dropped, after writing what was queued.
    _writer: JoinHandle<()>,
    /// Keep one request in `sample` (1 = every request).
    sample_one_in: u64,
}

impl AccessLog {
    /// Open `destination` (a file is created if missing) and start the writer thread; keep
    /// about `sample` (0 < sample ≤ 1) of all requests.
    pub fn start(destination: Destination, sample: f64) -> io::Result<AccessLog> {
        let output = Output::open(&destination)?;
        let (sender, receiver) = mpsc::sync_channel(QUEUE);
        let writer = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || write_lines(receiver, output, destination))?;
        let sample_one_in = if sample >= 1.0 {
            1
        } else {
            (1.0 / sample.max(1e-6)).round() as u64
        };
        Ok(AccessLog {
            sender,
            _writer: writer,
            sample_one_in,
        })
    }

    /// Whether this request is to be logged (sampling).
    pub fn wants(&self) -> bool {
        self.sample_one_in <= 1 || super::fast_random().is_multiple_of(self.sample_one_in)
    }

    /// Queue `entry` without waiting; dropped and counted if the writer is behind.
    pub fn log(&self, entry: Entry) {
        match self.sender.try_send(Message::Line(Box::new(entry))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                metrics::metrics().access_log_dropped.inc();
            }
        }
    }

    /// Reopen the file (after rotation moved it away); a no-op on stdout.
    pub fn reopen(&self) {
        let _ = self.sender.send(Message::Reopen);
    }

    /// Write out everything queued so far, and wait until it is.
    pub fn flush(&self) {
        let (done, wait) = mpsc::channel();
        if self.sender.send(Message::Flush(done)).is_ok() {
            let _ = wait.recv();
        }
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.flush();
    }
}

enum Output {
    Stdout(io::Stdout),
    File(BufWriter<File>),
}

impl Output {
    fn open(destination: &Destination) -> io::Result<Output> {
        Ok(match destination {
            Destination::Stdout => Output::Stdout(io::stdout()),
            Destination::File(path) => {
                let file = OpenOptions::new().create(true).append(true).open(path)?;
                Output::File(BufWriter::with_capacity(64 * 1024, file))
            }
        })
    }

    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        match self {
            Output::Stdout(out) => out.lock().write_all(line),
            Output::File(out) => out.write_all(line),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::Stdout(out) => out.lock().flush(),
            Output::File(out) => out.flush(),
        }
    }
}

/// The writer thread: serialize and write each entry; when the queue is empty, flush and
/// sleep for [`POLL`].
fn write_lines(receiver: Receiver<Message>, mut output: Output, destination: Destination) {
    let mut line = Vec::with_capacity(512);
    let mut failing = false;
    loop {
        let message = match receiver.try_recv() {
            Ok(message) => message,
            Err(mpsc::TryRecvError::Empty) => {
                let _ = output.flush();
                std::thread::sleep(POLL);
                continue;
            }
            Err(mpsc::TryRecvError::Disconnected) => break,
        };
        match message {
            Message::Line(mut entry) => {
                entry.time = rfc3339(entry.at);
                line.clear();
                if serde_json::to_writer(&mut line, &*entry).is_err() {
                    continue;
                }
                line.push(b'\n');
                match output.write_line(&line) {
                    Ok(()) => failing = false,
                    Err(e) if !failing => {
                        failing = true;
                        tracing::error!("access log: cannot write: {e}");
                    }
                    Err(_) => {}
                }
            }
            Message::Reopen => {
                let _ = output.flush();
                if let Destination::File(path) = &destination {
                    match Output::open(&destination) {
                        Ok(reopened) => {
                            output = reopened;
                            tracing::info!(file = %path.display(), "access log reopened");
                        }
                        Err(e) => tracing::error!(
                            file = %path.display(),
                            "access log: cannot reopen, still writing to the old file: {e}"
                        ),
                    }
                }
            }
            Message::Flush(done) => {
                let _ = output.flush();
                let _ = done.send(());
            }
        }
    }
    let _ = output.flush();
}

/// `at` as RFC 3339 in UTC with milliseconds (`2026-12-04T14:27:11.123Z`).
fn rfc3339(at: std::time::SystemTime) -> String {
    let now = time::OffsetDateTime::from(at);
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    now.format(&format).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u16) -> Entry {
        Entry {
            time: String::new(),
            at: std::time::SystemTime::now(),
            request_id: format!("id-{n}"),
            trace_id: None,
            route: Some("r".into()),
            method: "GET".into(),
            path: "/".into(),
            query: None,
            status: n,
            bytes_in: Some(0),
            bytes_out: None,
            duration_ms: 1.5,
            upstream_ms: None,
            plugin_ms: None,
            client: "127.0.0.1:1".into(),
            consumer: None,
            upstream: None,
            error: None,
            answered_by: None,
        }
    }

    #[test]
    fn lines_reach_the_file_and_a_reopen_starts_a_new_one() {
        let dir = std::env::temp_dir().join(format!("access-log-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("access.log");
        let _ = std::fs::remove_file(&path);
        let log = AccessLog::start(Destination::File(path.clone()), 1.0).unwrap();
        log.log(entry(200));
        log.flush();
        std::fs::rename(&path, dir.join("access.log.1")).unwrap();
        log.log(entry(201));
        log.reopen();
        log.log(entry(202));
        log.flush();
        let old = std::fs::read_to_string(dir.join("access.log.1")).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert_eq!(old.lines().count(), 2, "{old}");
        assert_eq!(new.lines().count(), 1, "{new}");
        let parsed: serde_json::Value = serde_json::from_str(new.trim()).unwrap();
        assert_eq!(parsed["status"], 202);
        assert!(parsed["time"].as_str().unwrap().ends_with('Z'));
    }
}
