//! Where QMP runs: unix sockets and TCP, with file descriptor passing on unix sockets.
//!
//! Everything above this module is generic over `AsyncRead + AsyncWrite`; this module only
//! opens and accepts connections and moves file descriptors with `SCM_RIGHTS`.

use std::fmt;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Mutex;
use std::task::{Context, Poll};

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags,
};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

/// The most file descriptors taken from one message; QEMU keeps only the first.
pub const MAX_FDS_PER_MESSAGE: usize = 16;

/// Where a QMP server listens: a unix socket path or a TCP `host:port`.
///
/// The rule is qemu.qmp's: a string with exactly one `:` whose right side is a port number is
/// TCP; anything else is a unix socket path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// A unix socket.
    Unix(PathBuf),
    /// A TCP address.
    Tcp {
        /// The host name or address.
        host: String,
        /// The port.
        port: u16,
    },
}

impl FromStr for Endpoint {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.matches(':').count() == 1 {
            if let Some((host, port)) = s.split_once(':') {
                if let Ok(port) = port.parse::<u16>() {
                    return Ok(Endpoint::Tcp { host: host.to_owned(), port });
                }
            }
        }
        Ok(Endpoint::Unix(PathBuf::from(s)))
    }
}

impl From<&Path> for Endpoint {
    fn from(path: &Path) -> Self {
        Endpoint::Unix(path.to_owned())
    }
}

impl From<PathBuf> for Endpoint {
    fn from(path: PathBuf) -> Self {
        Endpoint::Unix(path)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(path) => write!(f, "{}", path.display()),
            Endpoint::Tcp { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// A connected stream, unix or TCP.
#[derive(Debug)]
pub enum Stream {
    /// A unix socket, which can carry file descriptors.
    Unix(UnixStream),
    /// A TCP connection.
    Tcp(TcpStream),
}

impl Stream {
    /// Connects to an endpoint.
    ///
    /// # Errors
    /// The OS error when the connection fails.
    pub async fn connect(endpoint: &Endpoint) -> io::Result<Stream> {
        match endpoint {
            Endpoint::Unix(path) => Ok(Stream::Unix(UnixStream::connect(path).await?)),
            Endpoint::Tcp { host, port } => {
                let stream = TcpStream::connect((host.as_str(), *port)).await?;
                stream.set_nodelay(true)?;
                Ok(Stream::Tcp(stream))
            }
        }
    }

    /// Turns the stream into a [`Socket`], which waits only for read readiness.
    ///
    /// # Errors
    /// The OS error when the socket cannot be registered with the runtime.
    pub fn into_socket(self) -> io::Result<Socket> {
        let (fd, unix): (OwnedFd, bool) = match self {
            Stream::Unix(s) => (s.into_std()?.into(), true),
            Stream::Tcp(s) => (s.into_std()?.into(), false),
        };
        Socket::new(fd, unix)
    }
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// A connected unix or TCP socket registered with the runtime for read readiness only.
///
/// tokio's streams register for reading and writing at once, so every time the peer drains
/// some of our send buffer the kernel reports the socket writable and the runtime wakes up for
/// nothing. QEMU reads its input one byte per `recvmsg`, so against QEMU that is several
/// useless wake-ups per command. A `Socket` writes with a plain non-blocking `send` and only
/// when that would block does it wait for write readiness, on a duplicate of the descriptor
/// registered for that wait alone.
#[derive(Debug)]
pub struct Socket {
    fd: AsyncFd<OwnedFd>,
    unix: bool,
    /// While a write waits for room: a duplicate of `fd` registered for write readiness alone.
    write_waiter: Mutex<Option<AsyncFd<OwnedFd>>>,
}

impl Socket {
    fn new(fd: OwnedFd, unix: bool) -> io::Result<Socket> {
        Ok(Socket { fd: register(fd, Interest::READABLE)?, unix, write_waiter: Mutex::new(None) })
    }

    /// Whether this is a unix socket, which can carry file descriptors.
    #[must_use]
    pub fn is_unix(&self) -> bool {
        self.unix
    }

    /// Reads some bytes; `Ok(0)` is the end of the stream. Cancel-safe.
    ///
    /// # Errors
    /// The OS error when reading fails.
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_read(cx, buf, None)).await
    }

    /// Reads some bytes and the file descriptors that came with them (unix sockets only).
    /// Cancel-safe.
    ///
    /// # Errors
    /// The OS error when reading fails.
    pub async fn read_with_fds(&self, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_read(cx, buf, Some(fds))).await
    }

    /// Polls for some bytes, and with `fds`, for the descriptors that came with them.
    ///
    /// # Errors
    /// The OS error when reading fails.
    pub fn poll_read(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
        mut fds: Option<&mut Vec<OwnedFd>>,
    ) -> Poll<io::Result<usize>> {
        let len = buf.len();
        loop {
            let mut guard = std::task::ready!(self.fd.poll_read_ready(cx))?;
            let mut got_fds = false;
            let read = guard.try_io(|fd| match fds.as_deref_mut() {
                Some(fds) if self.unix => {
                    let before = fds.len();
                    let n = recv_fds(fd.as_fd(), buf, fds)?;
                    got_fds = fds.len() > before;
                    Ok(n)
                }
                _ => Ok(rustix::net::recv(fd, &mut *buf, RecvFlags::empty())?.0),
            });
            match read {
                Ok(Ok(n)) => {
                    // A short read drained the socket, so the next read would only say "would
                    // block": wait for the next readiness event instead, as tokio's own streams
                    // do. Not when descriptors came: `recvmsg` on a unix stream socket stops
                    // right after the bytes that carried them, with more data possibly waiting.
                    if !got_fds && n > 0 && n < len {
                        guard.clear_ready();
                    }
                    return Poll::Ready(Ok(n));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => {}
            }
        }
    }

    /// Writes some of `bytes`, with `fds` attached when there are any, and returns how many
    /// bytes went. Cancel-safe: dropped before it completes, it has written nothing.
    ///
    /// # Errors
    /// The OS error when writing fails; [`io::ErrorKind::Unsupported`] for descriptors on TCP.
    pub async fn write(&self, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_write(cx, bytes, fds)).await
    }

    /// Polls to write some of `bytes`, with `fds` attached when there are any.
    ///
    /// # Errors
    /// As [`Socket::write`].
    pub fn poll_write(&self, cx: &mut Context<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> Poll<io::Result<usize>> {
        if !fds.is_empty() && !self.unix {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::Unsupported, "file descriptors need a unix socket")));
        }
        loop {
            let sent =
                if fds.is_empty() { self.try_write(bytes) } else { send_fds(self.fd.get_ref().as_fd(), bytes, fds) };
            let mut waiter = self.write_waiter.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match sent {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // The send buffer is full: only now wait for room, on a duplicate registered
                    // for writing alone, which is dropped (deregistered) once a write goes out.
                    let waiter = match &mut *waiter {
                        Some(waiter) => waiter,
                        None => waiter.insert(register(rustix::io::dup(self.fd.get_ref())?, Interest::WRITABLE)?),
                    };
                    std::task::ready!(waiter.poll_write_ready(cx))?.clear_ready();
                }
                other => {
                    waiter.take();
                    return Poll::Ready(other);
                }
            }
        }
    }

    /// Writes some of `bytes` if the socket has room now, without waiting for it, and returns
    /// how many bytes went.
    ///
    /// # Errors
    /// [`io::ErrorKind::WouldBlock`] when the send buffer is full; the OS error when writing
    /// fails.
    pub fn try_write(&self, bytes: &[u8]) -> io::Result<usize> {
        rustix::net::send(self.fd.get_ref(), bytes, SendFlags::NOSIGNAL).map_err(io::Error::from)
    }

    /// Shuts down the writing direction, so the peer reads the end of the stream.
    ///
    /// # Errors
    /// The OS error when the socket cannot be shut down.
    pub fn shutdown_write(&self) -> io::Result<()> {
        rustix::net::shutdown(self.fd.get_ref(), rustix::net::Shutdown::Write).map_err(Into::into)
    }
}

/// Registers a descriptor with the runtime for one kind of readiness.
///
/// There is no safe way to do this: tokio's safe constructors were deprecated as unsound
/// (they could not know that an arbitrary `AsRawFd` keeps its descriptor), their replacement
/// `register_with_interest` is `unsafe`, and tokio's own socket types always register for
/// reading and writing together, which is the cost `Socket` exists to avoid. So this one small
/// function allows `unsafe`, and the contract is upheld by what it accepts and who sees the
/// result: it takes an `OwnedFd` by value (an open descriptor that nothing else closes), and
/// every `AsyncFd` it makes lives in a private field of `Socket`, which only ever borrows the
/// descriptor (`get_ref`) and never replaces or takes it out.
#[allow(unsafe_code)]
fn register(fd: OwnedFd, interest: Interest) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: `fd` is an open descriptor owned by the `OwnedFd`, which closes it only when
    // dropped, and `as_raw_fd` on an `OwnedFd` always returns that same descriptor. The
    // `AsyncFd` owns the `OwnedFd` and this module never calls `get_mut` or `into_inner` on
    // it, so the descriptor stays open and unchanged until the `AsyncFd` (and with it the
    // registration) is dropped.
    let registered = unsafe { AsyncFd::register_with_interest(fd, interest) };
    registered.map_err(|err| err.into_parts().1)
}

fn send_fds(fd: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<usize> {
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other("too many file descriptors for one message"));
    }
    let iov = [io::IoSlice::new(bytes)];
    rustix::net::sendmsg(fd, &iov, &mut control, SendFlags::NOSIGNAL).map_err(io::Error::from)
}

fn recv_fds(fd: BorrowedFd<'_>, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS_PER_MESSAGE))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut iov = [io::IoSliceMut::new(buf)];
    let msg = rustix::net::recvmsg(fd, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC).map_err(io::Error::from)?;
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    Ok(msg.bytes)
}

/// Binds a unix socket at `path` with permission bits `mode`, without a moment in which it
/// is reachable with looser ones and without replacing a live server's socket.
///
/// A socket file gets its permissions from the umask when it is bound, and a `chmod` after
/// `bind` leaves a window in which other users may connect (`fchmod` before `bind` does not
/// apply to the file). So the socket is bound inside a fresh directory of mode 0o700 next to
/// `path` (the same filesystem), given `mode` there, and only then hard-linked to `path`:
/// `link` never replaces an existing file, so a server that took the path meanwhile is not
/// displaced either. The private directory is removed before returning.
///
/// Whether an existing socket is live is found out by connecting to it, so a live server
/// sees one connection open and close. The staged path is `<parent>/.qmp<pid>.<n>/s`; with a
/// parent directory near the OS's limit on socket path length (108 bytes) and a very short
/// file name, it can be too long where `path` itself is not, and binding fails with the OS's
/// error.
fn bind_unix(path: &Path, mode: u32) -> io::Result<std::os::unix::net::UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => match std::os::unix::net::UnixStream::connect(path) {
            // Someone answers: a live server owns this path.
            Ok(_) => return Err(in_use(path)),
            // Nobody listens: a stale socket left by a process that ended; replace it.
            Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => std::fs::remove_file(path)?,
            // A full backlog (`EAGAIN`) also means a live server; anything else (such as no
            // permission to connect) leaves us unable to tell, so keep the file.
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Err(in_use(path)),
            Err(err) => return Err(err),
        },
        Ok(_) => return Err(in_use(path)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(err),
    }
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let private = private_dir(parent)?;
    let staged = private.join("s");
    let result = (|| {
        let listener = std::os::unix::net::UnixListener::bind(&staged)?;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(mode))?;
        std::fs::hard_link(&staged, path).map_err(|err| match err.kind() {
            io::ErrorKind::AlreadyExists => in_use(path),
            _ => err,
        })?;
        Ok(listener)
    })();
    let _ = std::fs::remove_file(&staged);
    let _ = std::fs::remove_dir(&private);
    result
}

/// Creates a directory of mode 0o700 under `parent`, with a short name so that the socket
/// path inside it stays within the OS's limit whenever `parent`'s does.
fn private_dir(parent: &Path) -> io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    loop {
        let dir = parent.join(format!(".qmp{}.{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
            other => return other.map(|()| dir),
        }
    }
}

fn in_use(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::AddrInUse, format!("{} is in use by a live server or another file", path.display()))
}

/// A listening socket, unix or TCP.
#[derive(Debug)]
pub enum Listener {
    /// A unix socket listener; the socket file is removed when it is dropped.
    Unix(UnixListener, PathBuf),
    /// A TCP listener.
    Tcp(TcpListener),
}

impl Listener {
    /// Listens on an endpoint. A unix socket is created with the permission bits `mode`
    /// (0o600 keeps other users out, as a monitor socket must) and is never reachable with
    /// looser ones; a stale socket file left by an earlier process is replaced, but a socket
    /// a live server listens on is not.
    ///
    /// # Errors
    /// [`io::ErrorKind::AddrInUse`] when a server already listens on the unix socket path or
    /// another file is there, and the OS error when binding fails otherwise.
    pub async fn bind(endpoint: &Endpoint, mode: u32) -> io::Result<Listener> {
        match endpoint {
            Endpoint::Unix(path) => {
                let listener = bind_unix(path, mode)?;
                listener.set_nonblocking(true)?;
                Ok(Listener::Unix(UnixListener::from_std(listener)?, path.clone()))
            }
            Endpoint::Tcp { host, port } => Ok(Listener::Tcp(TcpListener::bind((host.as_str(), *port)).await?)),
        }
    }

    /// The endpoint it listens on, with the port the OS chose when it was bound to port 0.
    ///
    /// # Errors
    /// The OS error when the address cannot be read.
    pub fn local_endpoint(&self) -> io::Result<Endpoint> {
        match self {
            Listener::Unix(_, path) => Ok(Endpoint::Unix(path.clone())),
            Listener::Tcp(l) => {
                let addr = l.local_addr()?;
                Ok(Endpoint::Tcp { host: addr.ip().to_string(), port: addr.port() })
            }
        }
    }

    /// Waits for a connection.
    ///
    /// # Errors
    /// The OS error when accepting fails.
    pub async fn accept(&self) -> io::Result<Stream> {
        match self {
            Listener::Unix(l, _) => Ok(Stream::Unix(l.accept().await?.0)),
            Listener::Tcp(l) => {
                let (stream, _) = l.accept().await?;
                stream.set_nodelay(true)?;
                Ok(Stream::Tcp(stream))
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_rule() {
        let cases = [
            ("/tmp/qmp.sock", Endpoint::Unix("/tmp/qmp.sock".into())),
            ("localhost:4444", Endpoint::Tcp { host: "localhost".into(), port: 4444 }),
            ("127.0.0.1:0", Endpoint::Tcp { host: "127.0.0.1".into(), port: 0 }),
            ("qmp:sock", Endpoint::Unix("qmp:sock".into())),
            ("a:b:4444", Endpoint::Unix("a:b:4444".into())),
            ("host:99999", Endpoint::Unix("host:99999".into())),
        ];
        for (text, expected) in cases {
            let parsed: Endpoint = text.parse().unwrap();
            assert_eq!(parsed, expected, "{text}");
            assert_eq!(parsed.to_string(), text);
        }
    }

    #[tokio::test]
    async fn bind_keeps_a_live_server_and_replaces_a_stale_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let endpoint = Endpoint::Unix(path.clone());
        let live = Listener::bind(&endpoint, 0o600).await.unwrap();
        let err = Listener::bind(&endpoint, 0o600).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        // The live server still has its socket and is reachable through it.
        let client = UnixStream::connect(&path).await.unwrap();
        live.accept().await.unwrap();
        drop(client);
        // A listener that went away without removing its file leaves a stale socket.
        std::mem::forget(live);
        let stale = std::os::unix::net::UnixListener::bind(dir.path().join("other.sock")).unwrap();
        drop(stale);
        let replaced = Listener::bind(&Endpoint::Unix(dir.path().join("other.sock")), 0o600).await.unwrap();
        drop(replaced);
        // A file that is not a socket is never removed.
        let file = dir.path().join("file");
        std::fs::write(&file, b"keep").unwrap();
        assert_eq!(
            Listener::bind(&Endpoint::Unix(file.clone()), 0o600).await.unwrap_err().kind(),
            io::ErrorKind::AddrInUse
        );
        assert_eq!(std::fs::read(&file).unwrap(), b"keep");
    }

    #[tokio::test]
    async fn fds_travel_with_their_bytes() {
        use std::io::{Read, Write};
        let (a, b) = UnixStream::pair().unwrap();
        let (a, b) = (Stream::Unix(a).into_socket().unwrap(), Stream::Unix(b).into_socket().unwrap());
        let (mut pipe_r, mut pipe_w) = std::io::pipe().unwrap();
        let sent = a.write(b"{\"execute\":\"getfd\"}", &[pipe_w.as_fd()]).await.unwrap();
        assert_eq!(sent, 19);
        let mut buf = [0u8; 64];
        let mut fds = Vec::new();
        let n = b.read_with_fds(&mut buf, &mut fds).await.unwrap();
        assert_eq!(&buf[..n], b"{\"execute\":\"getfd\"}");
        assert_eq!(fds.len(), 1);
        // The received descriptor is the pipe's write end: what goes in comes out of our read end.
        let mut received = std::fs::File::from(fds.pop().unwrap());
        received.write_all(b"hi").unwrap();
        drop(received);
        pipe_w.write_all(b"!").unwrap();
        drop(pipe_w);
        let mut out = String::new();
        pipe_r.read_to_string(&mut out).unwrap();
        assert_eq!(out, "hi!");
    }

    /// A read that stops after the bytes carrying descriptors leaves the readiness set, so the
    /// bytes queued behind them are read without any new readiness event; a short read without
    /// descriptors drained the socket.
    #[tokio::test]
    async fn bytes_behind_descriptors_are_read_without_a_new_event() {
        let (a, b) = UnixStream::pair().unwrap();
        let (a, b) = (Stream::Unix(a).into_socket().unwrap(), Stream::Unix(b).into_socket().unwrap());
        let (_pipe_r, pipe_w) = std::io::pipe().unwrap();
        a.write(b"plain,", &[]).await.unwrap();
        a.write(b"with-fd,", &[pipe_w.as_fd()]).await.unwrap();
        a.write(b"after", &[]).await.unwrap();
        let mut buf = [0u8; 64];
        let mut fds = Vec::new();
        let mut got = Vec::new();
        while got.len() < b"plain,with-fd,after".len() {
            let n = tokio::time::timeout(std::time::Duration::from_secs(10), b.read_with_fds(&mut buf, &mut fds))
                .await
                .expect("bytes behind descriptors must be read without a new readiness event")
                .unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"plain,with-fd,after");
        assert_eq!(fds.len(), 1);
    }
}
