//! The `raw` baseline's server: the same fan-out shape as the router with no WAMP at all.
//!
//! One thread per core, each with its own SO_REUSEPORT listener and epoll loop, like the
//! router's shards. A client's first byte says what it is: `P` publisher, `S` subscriber,
//! `E` echo; the server answers `K` once it is registered. A publisher's bytes (already
//! framed by the client) are read in chunks of up to 64 KiB and the *same chunk* is written
//! to every subscriber — forwarded to the other threads as one `Arc` per chunk — with one
//! write per subscriber per chunk, so the cost is the kernel's copy and the syscalls: the
//! machine's limit for this shape. An echo connection gets its bytes back.
//!
//! Backpressure: a subscriber more than `SUBSCRIBER_PENDING_MAX_BYTES` behind is dropped
//! (like a router's slow-consumer policy); while the subscribers' total backlog is above
//! `BACKLOG_PAUSE_BYTES`, publishers are not read, so TCP pushes back on them.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use crate::client::{RAW_ACK, RAW_ROLE_ECHO, RAW_ROLE_PUBLISHER, RAW_ROLE_SUBSCRIBER};
use crate::sys::{Epoll, EventFd, WAKE_TOKEN};

const READ_CHUNK_BYTES: usize = 64 * 1024;
const SUBSCRIBER_PENDING_MAX_BYTES: usize = 64 << 20;
const BACKLOG_PAUSE_BYTES: usize = 32 << 20;
const LISTENER_TOKEN: u64 = u64::MAX - 1;

/// A running raw server; stops and joins its threads on drop.
pub struct RawServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    shared: Arc<ServerShared>,
    threads: Vec<JoinHandle<()>>,
}

struct ServerShared {
    inboxes: Vec<Mutex<Vec<Arc<[u8]>>>>,
    wakers: Vec<EventFd>,
    backlog: AtomicUsize,
}

#[derive(PartialEq, Eq)]
enum Kind {
    New,
    Publisher,
    Subscriber,
    Echo,
}

struct SConn {
    sock: Socket,
    kind: Kind,
    out: Vec<u8>,
    out_pos: usize,
    want_out: bool,
}

impl SConn {
    fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

fn listener(addr: SocketAddr) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.bind(&addr.into())?;
    s.listen(4096)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

impl RawServer {
    /// Start `threads` server threads on a free loopback port.
    pub fn start(threads: usize) -> io::Result<RawServer> {
        let threads = threads.max(1);
        let first = listener("127.0.0.1:0".parse().expect("literal address"))?;
        let addr = first.local_addr()?.as_socket().ok_or_else(|| io::Error::other("listener has no address"))?;
        let mut listeners = vec![first];
        for _ in 1..threads {
            listeners.push(listener(addr)?);
        }
        let shared = Arc::new(ServerShared {
            inboxes: (0..threads).map(|_| Mutex::new(Vec::new())).collect(),
            wakers: (0..threads).map(|_| EventFd::new()).collect::<Result<_, _>>()?,
            backlog: AtomicUsize::new(0),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        for (id, l) in listeners.into_iter().enumerate() {
            let (shared, stop) = (shared.clone(), stop.clone());
            let h = std::thread::Builder::new()
                .name(format!("raw-server-{id}"))
                .spawn(move || serve(id, l, shared, stop))?;
            handles.push(h);
        }
        Ok(RawServer { addr, stop, shared, threads: handles })
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.shared.wakers.iter().for_each(EventFd::wake);
        for h in self.threads.drain(..) {
            let _ = h.join();
        }
    }
}

/// One server thread's connections.
struct Thread {
    id: usize,
    epoll: Epoll,
    shared: Arc<ServerShared>,
    conns: Vec<Option<SConn>>,
    subscribers: Vec<usize>,
    publishers: Vec<usize>,
}

fn serve(id: usize, listener: Socket, shared: Arc<ServerShared>, stop: Arc<AtomicBool>) {
    let Ok(epoll) = Epoll::new() else { return };
    if epoll.add(listener.as_raw_fd(), LISTENER_TOKEN, libc::EPOLLIN as u32).is_err()
        || epoll.add(shared.wakers[id].fd(), WAKE_TOKEN, libc::EPOLLIN as u32).is_err()
    {
        return;
    }
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    let mut buf = vec![0u8; READ_CHUNK_BYTES];
    let mut ready: Vec<(u64, u32)> = Vec::new();
    let mut th = Thread { id, epoll, shared, conns: Vec::new(), subscribers: Vec::new(), publishers: Vec::new() };
    while !stop.load(Ordering::Relaxed) {
        let paused = th.shared.backlog.load(Ordering::Relaxed) > BACKLOG_PAUSE_BYTES;
        let timeout = if paused { Duration::from_millis(1) } else { Duration::from_millis(100) };
        let n = th.epoll.wait(&mut events, Some(timeout));
        ready.clear();
        ready.extend(events[..n].iter().map(|e| (e.u64, e.events)));
        if paused {
            // Publishers were skipped while paused; look at them again.
            ready.extend(th.publishers.iter().map(|&i| (i as u64, libc::EPOLLIN as u32)));
        }
        for &(token, flags) in &ready {
            match token {
                LISTENER_TOKEN => th.accept_all(&listener),
                WAKE_TOKEN => {
                    th.shared.wakers[id].drain();
                    let chunks = std::mem::take(&mut *th.shared.inboxes[id].lock().unwrap_or_else(|e| e.into_inner()));
                    for c in chunks {
                        th.broadcast(&c);
                    }
                }
                t => th.on_ready(t as usize, flags, &mut buf),
            }
        }
    }
}

impl Thread {
    fn accept_all(&mut self, listener: &Socket) {
        while let Ok((sock, _)) = listener.accept() {
            if sock.set_nonblocking(true).is_err() || sock.set_tcp_nodelay(true).is_err() {
                continue;
            }
            let i = self.conns.iter().position(Option::is_none).unwrap_or(self.conns.len());
            if self.epoll.add(sock.as_raw_fd(), i as u64, libc::EPOLLIN as u32).is_err() {
                continue;
            }
            let c = SConn { sock, kind: Kind::New, out: Vec::new(), out_pos: 0, want_out: false };
            if i == self.conns.len() {
                self.conns.push(Some(c));
            } else {
                self.conns[i] = Some(c);
            }
        }
    }

    fn on_ready(&mut self, i: usize, flags: u32, buf: &mut [u8]) {
        let Some(Some(c)) = self.conns.get_mut(i) else { return };
        if flags & libc::EPOLLOUT as u32 != 0 && !flush(c, &self.epoll, i, &self.shared) {
            self.drop_conn(i);
            return;
        }
        if flags & (libc::EPOLLIN | libc::EPOLLHUP | libc::EPOLLERR) as u32 == 0 {
            return;
        }
        if c.kind == Kind::Publisher && self.shared.backlog.load(Ordering::Relaxed) > BACKLOG_PAUSE_BYTES {
            return;
        }
        // SAFETY: reads into our own buffer.
        let r = unsafe { libc::read(c.fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if r < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock {
            return;
        }
        if r <= 0 {
            self.drop_conn(i);
            return;
        }
        let mut data = &buf[..r as usize];
        if c.kind == Kind::New {
            c.kind = match data[0] {
                RAW_ROLE_PUBLISHER => Kind::Publisher,
                RAW_ROLE_SUBSCRIBER => Kind::Subscriber,
                RAW_ROLE_ECHO => Kind::Echo,
                _ => {
                    self.drop_conn(i);
                    return;
                }
            };
            queue(c, &[RAW_ACK], &self.shared);
            let ok = flush(c, &self.epoll, i, &self.shared);
            match c.kind {
                Kind::Subscriber => self.subscribers.push(i),
                Kind::Publisher => self.publishers.push(i),
                _ => {}
            }
            if !ok {
                self.drop_conn(i);
                return;
            }
            data = &data[1..];
        }
        if data.is_empty() {
            return;
        }
        let Some(Some(c)) = self.conns.get_mut(i) else { return };
        match c.kind {
            Kind::Echo => {
                queue(c, data, &self.shared);
                if !flush(c, &self.epoll, i, &self.shared) {
                    self.drop_conn(i);
                }
            }
            Kind::Publisher => {
                let chunk: Arc<[u8]> = Arc::from(data);
                for (t, inbox) in self.shared.inboxes.iter().enumerate() {
                    if t != self.id {
                        inbox.lock().unwrap_or_else(|e| e.into_inner()).push(chunk.clone());
                        self.shared.wakers[t].wake();
                    }
                }
                self.broadcast(&chunk);
            }
            _ => {}
        }
    }

    /// Write one chunk to every subscriber of this thread: straight from the chunk when the
    /// subscriber has nothing queued, else appended to its queue.
    fn broadcast(&mut self, chunk: &[u8]) {
        let mut dead = Vec::new();
        for &i in &self.subscribers {
            let Some(Some(c)) = self.conns.get_mut(i) else { continue };
            if c.out.len() - c.out_pos > SUBSCRIBER_PENDING_MAX_BYTES {
                dead.push(i);
                continue;
            }
            if !c.out.is_empty() {
                queue(c, chunk, &self.shared);
                continue;
            }
            // SAFETY: writes from a valid slice.
            let n = unsafe { libc::write(c.fd(), chunk.as_ptr().cast(), chunk.len()) };
            let n = if n >= 0 {
                n as usize
            } else {
                match io::Error::last_os_error().kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => 0,
                    _ => {
                        dead.push(i);
                        continue;
                    }
                }
            };
            if n < chunk.len() {
                queue(c, &chunk[n..], &self.shared);
                if !flush(c, &self.epoll, i, &self.shared) {
                    dead.push(i);
                }
            }
        }
        for i in dead {
            self.drop_conn(i);
        }
    }

    fn drop_conn(&mut self, i: usize) {
        if let Some(slot) = self.conns.get_mut(i)
            && let Some(c) = slot.take()
        {
            self.epoll.delete(c.fd());
            self.shared.backlog.fetch_sub(c.out.len() - c.out_pos, Ordering::Relaxed);
        }
        self.subscribers.retain(|&s| s != i);
        self.publishers.retain(|&s| s != i);
    }
}

fn queue(c: &mut SConn, data: &[u8], shared: &ServerShared) {
    c.out.extend_from_slice(data);
    shared.backlog.fetch_add(data.len(), Ordering::Relaxed);
}

/// Write what is queued; false if the connection failed.
fn flush(c: &mut SConn, epoll: &Epoll, token: usize, shared: &ServerShared) -> bool {
    while c.out_pos < c.out.len() {
        let rest = &c.out[c.out_pos..];
        // SAFETY: writes from a valid slice.
        let n = unsafe { libc::write(c.fd(), rest.as_ptr().cast(), rest.len()) };
        if n < 0 {
            match io::Error::last_os_error().kind() {
                io::ErrorKind::WouldBlock => break,
                io::ErrorKind::Interrupted => continue,
                _ => return false,
            }
        }
        c.out_pos += n as usize;
        shared.backlog.fetch_sub(n as usize, Ordering::Relaxed);
    }
    let all = c.out_pos == c.out.len();
    if all {
        c.out.clear();
        c.out_pos = 0;
    }
    if all == c.want_out {
        c.want_out = !all;
        let ev = if all { libc::EPOLLIN } else { libc::EPOLLIN | libc::EPOLLOUT };
        let _ = epoll.modify(c.fd(), token as u64, ev as u32);
    }
    true
}
