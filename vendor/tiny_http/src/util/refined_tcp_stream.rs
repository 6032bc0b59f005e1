use std::io::Result as IoResult;
use std::io::{Error as IoError, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::connection::Connection;
#[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
use crate::ssl::SslStream;

pub(crate) enum Stream {
    Http(Connection),
    #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
    Https(SslStream),
}

impl Stream {
    // taskyard patch: this was `Clone` with an `unwrap`, so a process out of
    // file descriptors panicked the accept thread and stopped the server
    // from accepting for good.
    fn try_clone(&self) -> IoResult<Self> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.try_clone().map(Stream::Http),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => Ok(Stream::Https(ssl_stream.clone())),
        }
    }
}

impl From<Connection> for Stream {
    fn from(tcp_stream: Connection) -> Self {
        Stream::Http(tcp_stream)
    }
}

impl Stream {
    fn secure(&self) -> bool {
        match self {
            Stream::Http(_) => false,
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(_) => true,
        }
    }

    fn peer_addr(&mut self) -> IoResult<Option<SocketAddr>> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.peer_addr(),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.peer_addr(),
        }
    }

    fn shutdown(&mut self, how: Shutdown) -> IoResult<()> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.shutdown(how),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.shutdown(how),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.read(buf),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.write(buf),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.write(buf),
        }
    }

    fn flush(&mut self) -> IoResult<()> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.flush(),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.flush(),
        }
    }
}

pub struct RefinedTcpStream {
    stream: Stream,
    close_read: bool,
    close_write: bool,
    /// taskyard patch: the deadline of the request being read, if any.
    deadline: Option<Arc<ReadDeadline>>,
}

/// taskyard patch: the time by which the request being read on a
/// connection must have arrived whole (head and body), shared by the
/// connection's read half and the code that parses requests from it.
///
/// A socket read timeout bounds each read only, so a client that sends a
/// byte a second would hold a thread for as long as it likes; this bounds
/// the request. Once passed, every later read fails too: the position in
/// the byte stream is lost and the connection can only be closed.
pub(crate) struct ReadDeadline {
    state: Mutex<DeadlineState>,
}

#[derive(Clone, Copy)]
enum DeadlineState {
    /// Between requests: only the socket's own read timeout applies.
    Unset,
    At(Instant),
    Passed,
}

impl ReadDeadline {
    pub(crate) fn new() -> ReadDeadline {
        ReadDeadline {
            state: Mutex::new(DeadlineState::Unset),
        }
    }

    /// Starts the clock of a request: it must have arrived within `timeout`.
    pub(crate) fn start(&self, timeout: Duration) {
        let mut state = self.state.lock().unwrap();
        if let DeadlineState::Unset = *state {
            *state = DeadlineState::At(Instant::now() + timeout);
        }
    }

    /// Stops the clock between requests; false if the deadline had passed.
    pub(crate) fn clear(&self) -> bool {
        let mut state = self.state.lock().unwrap();
        match *state {
            DeadlineState::Passed => false,
            _ => {
                *state = DeadlineState::Unset;
                true
            }
        }
    }

    fn check(&self) -> IoResult<()> {
        let mut state = self.state.lock().unwrap();
        match *state {
            DeadlineState::Unset => Ok(()),
            DeadlineState::At(at) if Instant::now() < at => Ok(()),
            _ => {
                *state = DeadlineState::Passed;
                Err(IoError::new(
                    ErrorKind::TimedOut,
                    "the request did not arrive within the read timeout",
                ))
            }
        }
    }
}

/// taskyard patch: a blocking socket reports a read or write timeout as
/// `WouldBlock` on Unix; say what it is.
fn timed_out(error: IoError, what: &str) -> IoError {
    if error.kind() == ErrorKind::WouldBlock {
        IoError::new(ErrorKind::TimedOut, format!("{what} timed out"))
    } else {
        error
    }
}

impl RefinedTcpStream {
    /// taskyard patch: fails instead of panicking when the socket cannot be
    /// duplicated (out of file descriptors).
    pub(crate) fn new<S>(stream: S) -> IoResult<(RefinedTcpStream, RefinedTcpStream)>
    where
        S: Into<Stream>,
    {
        let stream: Stream = stream.into();

        let (read, write) = (stream.try_clone()?, stream);

        let read = RefinedTcpStream {
            stream: read,
            close_read: true,
            close_write: false,
            deadline: None,
        };

        let write = RefinedTcpStream {
            stream: write,
            close_read: false,
            close_write: true,
            deadline: None,
        };

        Ok((read, write))
    }

    /// taskyard patch: reads fail once `deadline` has passed.
    pub(crate) fn set_read_deadline(&mut self, deadline: Arc<ReadDeadline>) {
        self.deadline = Some(deadline);
    }

    /// Returns true if this struct wraps around a secure connection.
    #[inline]
    pub(crate) fn secure(&self) -> bool {
        self.stream.secure()
    }

    pub(crate) fn peer_addr(&mut self) -> IoResult<Option<SocketAddr>> {
        self.stream.peer_addr()
    }

    /// taskyard patch: the descriptor of a plain (not TLS) socket.
    #[cfg(unix)]
    pub(crate) fn raw_fd(&self) -> Option<std::os::unix::io::RawFd> {
        match &self.stream {
            Stream::Http(connection) => Some(connection.raw_fd()),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(_) => None,
        }
    }
}

impl Drop for RefinedTcpStream {
    fn drop(&mut self) {
        if self.close_read {
            self.stream.shutdown(Shutdown::Read).ok();
        }

        if self.close_write {
            self.stream.shutdown(Shutdown::Write).ok();
        }
    }
}

impl Read for RefinedTcpStream {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        if let Some(deadline) = &self.deadline {
            deadline.check()?;
        }
        self.stream
            .read(buf)
            .map_err(|error| timed_out(error, "reading the request"))
    }
}

impl RefinedTcpStream {
    /// taskyard patch: a write that failed (the client stopped reading
    /// until the write timeout, or left) leaves a response cut short, so
    /// the connection can carry nothing more: shut it down both ways, which
    /// also ends the thread waiting for the client's next request and lets
    /// the buffered writer's last flush fail at once instead of blocking
    /// for another timeout.
    fn failed(&mut self, error: IoError) -> IoError {
        if error.kind() != ErrorKind::Interrupted {
            self.stream.shutdown(Shutdown::Both).ok();
        }
        timed_out(error, "writing the response")
    }
}

impl Write for RefinedTcpStream {
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        self.stream.write(buf).map_err(|error| self.failed(error))
    }

    fn flush(&mut self) -> IoResult<()> {
        self.stream.flush().map_err(|error| self.failed(error))
    }
}
