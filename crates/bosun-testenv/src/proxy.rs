//! A TCP proxy on loopback that a test can freeze: while frozen, its connections stay open but
//! no byte passes in either direction and new connections are accepted but not forwarded — what
//! a process sees when the network to the API server hangs (a partition, a stuck load
//! balancer), as opposed to a refused connection. Point a client at [`FreezableProxy::url`]
//! instead of the API server; TLS still verifies, since the proxy listens on 127.0.0.1 too.
//! It can also be retargeted, as a Service is when its endpoints change: new connections go to
//! the new upstream, open ones stay with the old.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A running proxy; dropping it closes the listener and every connection.
pub struct FreezableProxy {
    address: SocketAddr,
    frozen: watch::Sender<bool>,
    /// Where new connections go.
    upstream: watch::Sender<SocketAddr>,
    /// Bumped to close every open connection.
    epoch: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl FreezableProxy {
    /// Listens on `127.0.0.1:0` and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<FreezableProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let (frozen, thawed) = watch::channel(false);
        let (epoch, resets) = watch::channel(0);
        let (upstream, target) = watch::channel(upstream);
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let mut reset = resets.clone();
                reset.mark_unchanged();
                let forward = forward(client, *target.borrow(), thawed.clone());
                connections.spawn(async move {
                    tokio::select! {
                        () = forward => {}
                        _ = reset.changed() => {}
                    }
                });
            }
        });
        Ok(FreezableProxy { address, frozen, upstream, epoch, task })
    }

    /// Where the proxy listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `https://127.0.0.1:<port>`: the proxy as an API server URL.
    pub fn url(&self) -> String {
        format!("https://{}", self.address)
    }

    /// Stops every byte, on open and new connections alike, until [`FreezableProxy::thaw`].
    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    /// Lets bytes pass again, including those held while frozen.
    pub fn thaw(&self) {
        self.frozen.send_replace(false);
    }

    /// Sends new connections to `upstream`; open ones stay where they are.
    pub fn retarget(&self, upstream: SocketAddr) {
        self.upstream.send_replace(upstream);
    }

    /// Closes every open connection (what is held while frozen is lost); new ones are
    /// forwarded as before.
    pub fn reset(&self) {
        self.epoch.send_modify(|epoch| *epoch += 1);
    }
}

impl Drop for FreezableProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies both ways between `client` and a new connection to `upstream`.
async fn forward(client: TcpStream, upstream: SocketAddr, frozen: watch::Receiver<bool>) {
    if passable(&frozen).await.is_err() {
        return;
    }
    let Ok(server) = TcpStream::connect(upstream).await else { return };
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::select! {
        _ = copy(client_read, server_write, frozen.clone()) => {}
        _ = copy(server_read, client_write, frozen) => {}
    }
}

/// Copies `from` to `to`, holding what was read while the proxy is frozen.
async fn copy(
    mut from: impl AsyncReadExt + Unpin,
    mut to: impl AsyncWriteExt + Unpin,
    frozen: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let read = from.read(&mut buffer).await?;
        if read == 0 {
            return Ok(());
        }
        passable(&frozen).await.map_err(|_| std::io::ErrorKind::BrokenPipe)?;
        to.write_all(&buffer[..read]).await?;
    }
}

/// Completes once the proxy is not frozen; an error when the proxy is gone.
async fn passable(frozen: &watch::Receiver<bool>) -> Result<(), watch::error::RecvError> {
    frozen.clone().wait_for(|frozen| !*frozen).await.map(|_| ())
}
