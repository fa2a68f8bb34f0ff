//! The client streams a connection is served on — a TCP socket, or TLS over one — and the two
//! things the connection loop needs of them beyond reading and writing: waiting for the client
//! to speak again while parked, and knowing whether bytes it already sent are held in a buffer
//! above the socket (TLS records read and decrypted but not handed to hyper).

use std::future::Future;
use std::io;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// A stream a client connection is served on.
pub trait ClientStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Resolves when the socket has bytes to read (or is closed).
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send;

    /// Whether bytes already taken from the socket wait above it; a parked connection with
    /// such bytes must be served again at once, since the socket will not wake it.
    fn has_buffered(&mut self) -> bool;
}

impl ClientStream for TcpStream {
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send {
        TcpStream::readable(self)
    }

    fn has_buffered(&mut self) -> bool {
        false
    }
}

impl ClientStream for TlsStream<TcpStream> {
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send {
        self.get_ref().0.readable()
    }

    fn has_buffered(&mut self) -> bool {
        // Decrypts any whole records read ahead; an error is for hyper to read and report.
        match self.get_mut().1.process_new_packets() {
            Ok(state) => state.plaintext_bytes_to_read() > 0 || state.peer_has_closed(),
            Err(_) => true,
        }
    }
}
