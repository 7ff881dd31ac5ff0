//! `Maildir`: each accepted message becomes one file in `DIR/new`.
//!
//! The message streams into `DIR/tmp/<unique>` (64 KiB writes through io_uring); at its end
//! the file is fsynced, renamed into `DIR/new` and the directory fsynced, and only then does
//! the client get `250`. The file starts with `X-Envelope-From: <path>` and one
//! `X-Envelope-To: <path>` line per accepted recipient, followed by the content exactly as
//! received after dot-unstuffing. A message that is refused, aborted or not stored leaves
//! no file, even when its delivery is cancelled part-way (the session ends, the shutdown
//! grace period runs out): the file is removed unless its delivery completed.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use compio::buf::BufResult;
use compio::fs::File;
use compio::io::AsyncWriteAtExt;
use smtpd_core::handler::{AbortReason, Context, Handler, Verdict};
use smtpd_core::Reply;

const WRITE_SIZE: usize = 64 * 1024;
const STORE_FAILED: Reply<'static> = Reply::new(451, (4, 3, 0), "Error: could not store message");

/// Writes messages into a maildir; one value per connection, sharing the directory.
#[derive(Debug)]
pub struct Maildir {
    dir: Arc<PathBuf>,
    open: Option<OpenMessage>,
}

#[derive(Debug)]
struct OpenMessage {
    file: File,
    name: String,
    written: u64,
    buffer: Vec<u8>,
    undelivered: Undelivered,
}

/// A message file whose delivery has not completed: removed when this is dropped (on a
/// failure, or when the delivery is cancelled), unless [`delivered`](Self::delivered).
#[derive(Debug)]
struct Undelivered(Option<PathBuf>);

impl Undelivered {
    /// The file is now at `path`.
    fn moved(&mut self, path: PathBuf) {
        self.0 = Some(path);
    }

    fn delivered(mut self) {
        self.0 = None;
    }
}

impl Drop for Undelivered {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            // Synchronous: a cancelled future cannot await, and unlinking is quick.
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Maildir {
    /// Creates `dir/{tmp,new,cur}` if needed, and checks that this process may write into
    /// `tmp` and `new`, so that a server that could not deliver does not start.
    pub fn create_dirs(dir: &Path) -> io::Result<()> {
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        for sub in ["tmp", "new"] {
            let path = std::ffi::CString::new(dir.join(sub).into_os_string().into_encoded_bytes())
                .map_err(|_| io::ErrorKind::InvalidInput)?;
            // SAFETY: a valid C string; checks with the effective ids.
            let status = unsafe {
                libc::faccessat(
                    libc::AT_FDCWD,
                    path.as_ptr(),
                    libc::W_OK | libc::X_OK,
                    libc::AT_EACCESS,
                )
            };
            if status != 0 {
                let error = io::Error::last_os_error();
                return Err(io::Error::new(error.kind(), format!("{sub}: {error}")));
            }
        }
        Ok(())
    }

    /// A handler writing into `dir` (whose subdirectories must exist).
    pub fn new(dir: Arc<PathBuf>) -> Self {
        Maildir { dir, open: None }
    }

    async fn start(&mut self, cx: &Context<'_>) -> io::Result<()> {
        let name = unique_name();
        let path = self.dir.join("tmp").join(&name);
        // Armed before the file may exist: a cancelled open removes what it created.
        let undelivered = Undelivered(Some(path.clone()));
        // Mail is private: readable by the server's user only.
        let opened = compio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .await;
        let file = match opened {
            Ok(file) => file,
            Err(error) => {
                // Not created here (it may be somebody else's): leave it.
                undelivered.delivered();
                return Err(error);
            }
        };
        let mut buffer = Vec::with_capacity(WRITE_SIZE);
        let mailfrom = cx.mailfrom.unwrap_or_default();
        buffer.extend_from_slice(format!("X-Envelope-From: <{mailfrom}>\n").as_bytes());
        for rcpt in cx.rcpttos.clone() {
            buffer.extend_from_slice(format!("X-Envelope-To: <{rcpt}>\n").as_bytes());
        }
        self.open = Some(OpenMessage {
            file,
            name,
            written: 0,
            buffer,
            undelivered,
        });
        Ok(())
    }

    /// Delivers the open message: on any failure (or cancellation) its file is removed.
    async fn finish(&mut self) -> io::Result<()> {
        let Some(mut message) = self.open.take() else {
            return Err(io::Error::other("no message open"));
        };
        message.flush().await?;
        message.file.sync_all().await?;
        let OpenMessage {
            file,
            name,
            mut undelivered,
            ..
        } = message;
        let _ = file.close().await;
        let delivered = self.dir.join("new").join(&name);
        compio::fs::rename(self.dir.join("tmp").join(&name), &delivered).await?;
        // The rename is durable once the directory is synced. If that fails, the client
        // gets 451 and will send again: the file must not stay behind as a duplicate.
        undelivered.moved(delivered);
        let new = File::open(self.dir.join("new")).await?;
        let synced = new.sync_all().await;
        let _ = new.close().await;
        synced?;
        undelivered.delivered();
        Ok(())
    }

    /// Drops the open message, if any, and its file.
    fn discard(&mut self) {
        self.open = None;
    }
}

impl OpenMessage {
    async fn flush(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let buffer = std::mem::take(&mut self.buffer);
        let len = buffer.len() as u64;
        let BufResult(result, mut buffer) = self.file.write_all_at(buffer, self.written).await;
        result?;
        self.written += len;
        buffer.clear();
        self.buffer = buffer;
        Ok(())
    }
}

impl Handler for Maildir {
    async fn data_start(&mut self, cx: &Context<'_>) -> Verdict<'_> {
        self.discard();
        match self.start(cx).await {
            Ok(()) => Verdict::Accept,
            Err(error) => {
                tracing::error!(%error, dir = %self.dir.display(), "maildir: cannot create message file");
                Verdict::Reply(STORE_FAILED)
            }
        }
    }

    async fn data_chunk(&mut self, _: &Context<'_>, chunk: &[u8]) -> Result<(), Reply<'static>> {
        let Some(message) = self.open.as_mut() else {
            return Err(STORE_FAILED);
        };
        message.buffer.extend_from_slice(chunk);
        if message.buffer.len() >= WRITE_SIZE {
            if let Err(error) = message.flush().await {
                tracing::error!(%error, "maildir: write failed");
                return Err(STORE_FAILED);
            }
        }
        Ok(())
    }

    async fn data_end(&mut self, _: &Context<'_>) -> Verdict<'_> {
        match self.finish().await {
            Ok(()) => Verdict::Accept,
            Err(error) => {
                tracing::error!(%error, "maildir: cannot deliver message");
                Verdict::Reply(STORE_FAILED)
            }
        }
    }

    async fn data_abort(&mut self, _: &Context<'_>, _: AbortReason) {
        self.discard();
    }
}

/// `<seconds>.M<micros>P<pid>Q<counter>.<host>`, unique per process (maildir(5)).
fn unique_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static HOST: OnceLock<String> = OnceLock::new();
    let host = HOST.get_or_init(|| {
        // maildir(5): '/' and ':' in the host name are written in octal.
        crate::cli::host_name()
            .replace('/', "\\057")
            .replace(':', "\\072")
    });
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{}.M{}P{}Q{}.{host}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_undelivered_file_is_removed_wherever_it_went_unless_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name);
        for name in ["dropped", "moved", "delivered"] {
            std::fs::write(path(name), "x").unwrap();
        }
        drop(Undelivered(Some(path("dropped"))));
        let mut moved = Undelivered(Some(path("moved away")));
        moved.moved(path("moved"));
        drop(moved);
        Undelivered(Some(path("delivered"))).delivered();
        assert!(!path("dropped").exists());
        assert!(!path("moved").exists());
        assert!(path("delivered").exists());
    }
}
