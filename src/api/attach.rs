//! The framed stream of an attached one-off dyno (`wasmdyno run -a APP`).
//!
//! `POST /apps/{app}/dynos` with `"attach": true` and `Upgrade: wasmdyno-attach` answers `101 Switching
//! Protocols` (the dyno's name in `Wasmdyno-Dyno`), and the connection then carries frames both ways:
//! one byte of stream id, a big-endian `u32` length, then that many bytes.
//!
//! | id | stream | direction | payload |
//! |----|--------|-----------|---------|
//! | 0 | stdin | client → server | bytes; an empty frame is end of file |
//! | 1 | stdout | server → client | bytes |
//! | 2 | stderr | server → client | bytes |
//! | 3 | exit | server → client | the exit status, big-endian `i32`; the last frame |
//! | 4 | stop | client → server | empty: stop the dyno gracefully (Ctrl-C) |
//!
//! Bytes pass through untouched, so binary data arrives intact, and the exit status is the guest's own.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use crate::dyno::{Attach, Manager};
use crate::runtime::stdio::{Input, Output};

/// The `Upgrade` protocol name.
pub const PROTOCOL: &str = "wasmdyno-attach";
/// The response header naming the dyno.
pub const DYNO_HEADER: &str = "wasmdyno-dyno";
/// The largest payload a frame may carry; writers split bigger data.
pub const MAX_PAYLOAD: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Stdin(Vec<u8>),
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    Exit(i32),
    Stop,
}

impl Frame {
    /// The frame's bytes on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let (id, payload): (u8, &[u8]) = match self {
            Frame::Stdin(data) => (0, data),
            Frame::Stdout(data) => (1, data),
            Frame::Stderr(data) => (2, data),
            Frame::Exit(code) => {
                let mut out = vec![3, 0, 0, 0, 4];
                out.extend_from_slice(&code.to_be_bytes());
                return out;
            }
            Frame::Stop => (4, &[]),
        };
        debug_assert!(payload.len() <= MAX_PAYLOAD);
        let mut out = Vec::with_capacity(5 + payload.len());
        out.push(id);
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// The payload's length, what flow control counts.
    pub fn len(&self) -> usize {
        match self {
            Frame::Stdin(d) | Frame::Stdout(d) | Frame::Stderr(d) => d.len(),
            Frame::Exit(_) => 4,
            Frame::Stop => 0,
        }
    }
}

/// Reads the next frame; `None` when the stream ends cleanly between frames.
pub async fn read_frame(reader: &mut (impl AsyncRead + Unpin)) -> io::Result<Option<Frame>> {
    let mut header = [0u8; 5];
    match reader.read_exact(&mut header[..1]).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    reader.read_exact(&mut header[1..]).await?;
    let len = u32::from_be_bytes(header[1..].try_into().expect("4 bytes")) as usize;
    if len > MAX_PAYLOAD {
        return Err(invalid(format!(
            "frame of {len} bytes (the largest is {MAX_PAYLOAD})"
        )));
    }
    let mut payload = vec![0u8; len];
    reader.read_exact(&mut payload).await?;
    Ok(Some(match header[0] {
        0 => Frame::Stdin(payload),
        1 => Frame::Stdout(payload),
        2 => Frame::Stderr(payload),
        3 => {
            let bytes: [u8; 4] = payload
                .as_slice()
                .try_into()
                .map_err(|_| invalid(format!("exit frame of {len} bytes (expected 4)")))?;
            Frame::Exit(i32::from_be_bytes(bytes))
        }
        4 => Frame::Stop,
        id => return Err(invalid(format!("unknown stream id {id}"))),
    }))
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// The server's end of one attached dyno: the streams the dyno writes to and reads from, and the task that
/// carries them over the upgraded connection.
pub(crate) struct Session {
    out: Arc<OutQueue>,
    frames: mpsc::UnboundedReceiver<Frame>,
    stdin: mpsc::Sender<Vec<u8>>,
    exit: oneshot::Receiver<i32>,
    idle: Duration,
}

/// Output bytes queued and not yet written to the client past which a writing guest waits.
const HIGH_WATER: usize = 1 << 20;

/// The dyno's output on its way to the client. Writers never block the runtime: past [`HIGH_WATER`] a writing
/// guest waits in `block_in_place`, so a slow terminal slows the dyno that floods it and nothing else.
struct OutQueue {
    frames: mpsc::UnboundedSender<Frame>,
    pending: Mutex<usize>,
    drained: Condvar,
    closed: AtomicBool,
    /// Milliseconds since `started` of the last input or output.
    last_activity: AtomicU64,
    started: Instant,
}

impl OutQueue {
    fn touch(&self) {
        let now = self.started.elapsed().as_millis() as u64;
        self.last_activity.store(now, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = self.last_activity.load(Ordering::Relaxed);
        self.started
            .elapsed()
            .saturating_sub(Duration::from_millis(last))
    }

    fn push(&self, frame: Frame) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        self.touch();
        let len = frame.len();
        let mut pending = self.pending.lock().expect("attach queue");
        *pending += len;
        let over = *pending > HIGH_WATER;
        drop(pending);
        if self.frames.send(frame).is_err() {
            return;
        }
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if over && multi_thread {
            tokio::task::block_in_place(|| {
                let pending = self.pending.lock().expect("attach queue");
                let _unused = self
                    .drained
                    .wait_while(pending, |p| {
                        *p > HIGH_WATER / 2 && !self.closed.load(Ordering::Acquire)
                    })
                    .expect("attach queue");
            });
        }
    }

    /// Data output to one stream, split into frames.
    fn output(self: &Arc<Self>, stream: fn(Vec<u8>) -> Frame) -> Output {
        let queue = self.clone();
        Arc::new(move |data: &[u8]| {
            for chunk in data.chunks(MAX_PAYLOAD) {
                queue.push(stream(chunk.to_vec()));
            }
        })
    }

    fn written(&self, len: usize) {
        let mut pending = self.pending.lock().expect("attach queue");
        *pending = pending.saturating_sub(len);
        drop(pending);
        self.drained.notify_all();
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let _guard = self.pending.lock().expect("attach queue");
        self.drained.notify_all();
    }
}

/// How the client's side of a session ended.
enum ClientEnd {
    /// Ctrl-C: stop the dyno, keep sending its output and exit status.
    Stop,
    /// The connection closed or broke: nobody is left to see the dyno.
    Gone,
}

impl Session {
    /// A session and the terminal to run its dyno with. `idle` stops a dyno with no input or output for that long.
    pub(crate) fn new(idle: Duration) -> (Session, Attach) {
        let (frames_tx, frames) = mpsc::unbounded_channel();
        let out = Arc::new(OutQueue {
            frames: frames_tx,
            pending: Mutex::new(0),
            drained: Condvar::new(),
            closed: AtomicBool::new(false),
            last_activity: AtomicU64::new(0),
            started: Instant::now(),
        });
        let (stdin, stdin_rx) = mpsc::channel(8);
        let (exit_tx, exit) = oneshot::channel();
        let attach = Attach {
            stdin: Input::from_channel(stdin_rx),
            stdout: out.output(Frame::Stdout),
            stderr: out.output(Frame::Stderr),
            exit: exit_tx,
        };
        let session = Session {
            out,
            frames,
            stdin,
            exit,
            idle,
        };
        (session, attach)
    }

    /// Carries the dyno's streams over the upgraded connection until the dyno has exited and its exit frame is
    /// written, or the client is gone. Ctrl-C, a vanished client and an idle timeout stop the dyno gracefully.
    pub(crate) async fn serve(
        self,
        upgrade: OnUpgrade,
        manager: Manager,
        app: String,
        dyno: String,
    ) {
        let Session {
            out,
            mut frames,
            stdin,
            exit,
            idle,
        } = self;
        let stop = {
            let (manager, app, dyno) = (manager.clone(), app.clone(), dyno.clone());
            move || {
                let (manager, app, dyno) = (manager.clone(), app.clone(), dyno.clone());
                tokio::spawn(async move { manager.stop_dyno(&app, &dyno).await });
            }
        };
        let upgraded = match upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                tracing::warn!("attach {app} {dyno}: the upgrade failed: {e}");
                out.close();
                stop();
                return;
            }
        };
        let (mut reader, mut writer) = tokio::io::split(TokioIo::new(upgraded));

        // The exit status follows the last output: both go through the same queue.
        let exit_out = out.clone();
        tokio::spawn(async move {
            if let Ok(code) = exit.await {
                exit_out.push(Frame::Exit(code));
            }
        });

        let write_out = out.clone();
        let writing = async move {
            while let Some(frame) = frames.recv().await {
                let last = matches!(frame, Frame::Exit(_));
                if writer.write_all(&frame.encode()).await.is_err() {
                    break;
                }
                write_out.written(frame.len());
                if last {
                    let _ = writer.flush().await;
                    let _ = writer.shutdown().await;
                    break;
                }
            }
            write_out.close();
        };

        // The dyno's stdin stays open until the client ends it (or the session ends), not when the reading below
        // is cancelled: a dyno stopped for idleness must be told by its stop, in order, not by a sudden EOF.
        let stdin = Arc::new(Mutex::new(Some(stdin)));
        let read_stdin = stdin.clone();
        let read_out = out.clone();
        let reading = async move {
            loop {
                match read_frame(&mut reader).await {
                    Ok(Some(Frame::Stdin(data))) if data.is_empty() => {
                        read_stdin.lock().expect("attach stdin").take();
                    }
                    Ok(Some(Frame::Stdin(data))) => {
                        read_out.touch();
                        let tx = read_stdin.lock().expect("attach stdin").clone();
                        if let Some(tx) = tx {
                            // The dyno may have stopped reading for good; its input is then discarded.
                            let _ = tx.send(data).await;
                        }
                    }
                    Ok(Some(Frame::Stop)) => return ClientEnd::Stop,
                    Ok(Some(_)) | Ok(None) | Err(_) => return ClientEnd::Gone,
                }
            }
        };

        let idle_out = out.clone();
        let idling = async move {
            let tick = (idle / 4).clamp(Duration::from_millis(10), Duration::from_secs(30));
            loop {
                tokio::time::sleep(tick).await;
                if idle_out.idle_for() >= idle {
                    return;
                }
            }
        };

        tokio::pin!(writing);
        tokio::select! {
            () = &mut writing => return,
            end = reading => {
                stop();
                if matches!(end, ClientEnd::Gone) {
                    out.close();
                    return;
                }
            }
            () = idling => {
                out.push(Frame::Stderr(format!(
                    "wasmdyno: {dyno} had no input or output for {}s; stopping it\n",
                    idle.as_secs()
                ).into_bytes()));
                stop();
            }
        }
        writing.await;
        drop(stdin);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_bad_ones_are_refused() {
        let frames = [
            Frame::Stdin((0..=255).collect()),
            Frame::Stdin(Vec::new()),
            Frame::Stdout(b"out".to_vec()),
            Frame::Stderr(vec![0, 10, 13]),
            Frame::Stop,
            Frame::Exit(-7),
            Frame::Exit(300),
        ];
        let wire: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
        let mut reader = &wire[..];
        for frame in &frames {
            assert_eq!(read_frame(&mut reader).await.unwrap().as_ref(), Some(frame));
        }
        assert_eq!(read_frame(&mut reader).await.unwrap(), None);

        let mut truncated = &[1u8, 0, 0, 0, 9, b'x'][..];
        assert!(read_frame(&mut truncated).await.is_err());
        let mut unknown = &[9u8, 0, 0, 0, 0][..];
        let err = read_frame(&mut unknown).await.unwrap_err();
        assert!(err.to_string().contains("unknown stream id 9"), "{err}");
        let mut huge = &[1u8, 0xff, 0xff, 0xff, 0xff][..];
        assert!(read_frame(&mut huge).await.is_err());
    }
}
