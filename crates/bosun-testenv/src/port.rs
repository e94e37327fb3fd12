//! Loopback ports for processes that take a port number rather than a listening socket
//! (etcd, kube-apiserver, hook scripts): the one port helper of the project. In-process
//! servers bind `127.0.0.1:0` themselves and keep the listener instead.

use std::net::TcpListener;

/// A loopback port that was free a moment ago: bound, read and released for the process
/// about to listen on it.
///
/// # Panics
///
/// If no loopback port can be bound at all.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("binding an ephemeral loopback port")
}
