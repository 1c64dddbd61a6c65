//! One client connection: its address, the request head it is sending (for H-codes before hyper parses it).

#[allow(unused_imports)]
use super::*;

/// What the router knows about one client connection: who, and enough of its first request head to log a head
/// that was too large to parse.
pub(super) struct Client {
    pub(super) peer: SocketAddr,
    /// The bytes of the first request head, kept until it is parsed (at most [`MAX_HEAD`] + 1).
    pub(super) head: Mutex<Vec<u8>>,
    pub(super) capturing: AtomicBool,
    /// The Host of the latest request on this connection.
    pub(super) last_host: Mutex<Option<String>>,
    /// The app of a listener of its own ([`Router::app_service`]).
    pub(super) app: Option<String>,
    /// `X-Forwarded-Port` and the client's address, as header values made once per connection.
    pub(super) port_header: HeaderValue,
    pub(super) ip_header: HeaderValue,
}

impl Client {
    pub(super) fn new(peer: SocketAddr, port: u16) -> Client {
        Client {
            peer,
            head: Mutex::default(),
            capturing: AtomicBool::new(true),
            last_host: Mutex::default(),
            app: None,
            port_header: HeaderValue::from(port),
            ip_header: HeaderValue::from_str(&peer.ip().to_string())
                .expect("an IP address is a header value"),
        }
    }

    pub(super) fn request_started(&self) {
        if self.capturing.swap(false, Ordering::AcqRel) {
            *self.head.lock().expect("head") = Vec::new();
        }
    }

    /// The client's address, as the router's log line shows it (`fwd="..."`).
    pub(super) fn ip_text(&self) -> &str {
        self.ip_header.to_str().unwrap_or_default()
    }

    pub(super) fn set_host(&self, host: &str) {
        let mut last = self.last_host.lock().expect("host");
        if last.as_deref() != Some(host) {
            *last = Some(host.to_string());
        }
    }
}

/// The client's TCP stream, recording the first request head as it is read.
pub(super) struct Recorder {
    pub(super) stream: tokio::net::TcpStream,
    pub(super) client: Arc<Client>,
}

impl AsyncRead for Recorder {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if this.client.capturing.load(Ordering::Acquire) {
            let mut head = this.client.head.lock().expect("head");
            let room = (MAX_HEAD + 1).saturating_sub(head.len());
            let new = &buf.filled()[before..];
            head.extend_from_slice(&new[..new.len().min(room)]);
            if head.len() > MAX_HEAD {
                this.client.capturing.store(false, Ordering::Release);
            }
        }
        polled
    }
}

impl AsyncWrite for Recorder {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
