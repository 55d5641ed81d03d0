//! The floor under shardbar's 1-caller RPC round trip: what one loopback round trip costs
//! when the server side is a blocking thread (like loadgen's raw echo) and when it is a
//! glommio executor (like a shard), for the two shapes that matter:
//!
//! - `echo`: client → server → client (one hop; loadgen's `raw --shape echo`);
//! - `relay`: caller → server → callee → server → caller (two hops; the shape of a routed
//!   WAMP call, with no WAMP in it).
//!
//! The server is pinned to CPU 0 (as shard 0 is); the clients are plain blocking threads.
//! 64-byte messages, one in flight. Prints p50/p99 per (server, shape).
//!
//! Run: `cargo bench --bench echo_floor` (3 s per case; `ECHO_FLOOR_SECS=N` to change).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::{LocalExecutorBuilder, Placement};

const MSG: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Shape {
    Echo,
    Relay,
}

#[derive(Clone, Copy, Debug)]
enum Server {
    Thread,
    Glommio { spin_us: u64 },
}

impl Server {
    fn name(self) -> String {
        match self {
            Server::Thread => "blocking thread".into(),
            Server::Glommio { spin_us: 0 } => "glommio executor".into(),
            Server::Glommio { spin_us } => format!("glommio, spin_before_park {spin_us} µs"),
        }
    }
}

fn pin_to_cpu0() {
    if let Some(id) = core_affinity::get_core_ids().and_then(|ids| ids.into_iter().next()) {
        core_affinity::set_for_current(id);
    }
}

/// Blocking server: accepts the connections the shape needs, serves them, ends on EOF.
fn thread_server(listener: TcpListener, shape: Shape) {
    pin_to_cpu0();
    let (a, _) = listener.accept().expect("accept");
    a.set_nodelay(true).expect("nodelay");
    match shape {
        Shape::Echo => copy_blocking(a.try_clone().expect("clone"), a),
        Shape::Relay => {
            let (b, _) = listener.accept().expect("accept");
            b.set_nodelay(true).expect("nodelay");
            let (a2, b2) = (a.try_clone().expect("clone"), b.try_clone().expect("clone"));
            let back = thread::spawn(move || copy_blocking(b2, a2));
            copy_blocking(a, b);
            back.join().expect("relay thread");
        }
    }
}

fn copy_blocking(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 4096];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = to.shutdown(std::net::Shutdown::Write);
                return;
            }
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// The same server on a glommio executor pinned to CPU 0.
fn glommio_server(listener: TcpListener, shape: Shape, spin_us: u64) {
    let mut builder = LocalExecutorBuilder::new(Placement::Fixed(0));
    if spin_us > 0 {
        builder = builder.spin_before_park(Duration::from_micros(spin_us));
    }
    let std_listener = listener;
    builder
        .spawn(move || async move {
            let accept = || {
                let (s, _) = std_listener.accept().expect("accept");
                s.set_nodelay(true).expect("nodelay");
                s.set_nonblocking(true).expect("nonblocking");
                // SAFETY: the fd comes from a live std TcpStream whose ownership moves here.
                unsafe {
                    use std::os::fd::{FromRawFd, IntoRawFd};
                    glommio::net::TcpStream::from_raw_fd(s.into_raw_fd())
                }
            };
            let mut a = accept();
            let mut abuf = vec![0u8; 4096];
            match shape {
                Shape::Echo => loop {
                    match a.read(&mut abuf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if a.write_all(&abuf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                },
                Shape::Relay => {
                    let mut b = accept();
                    let mut bbuf = vec![0u8; 4096];
                    loop {
                        let (from_a, r) = futures_lite::future::or(async { (true, a.read(&mut abuf).await) }, async {
                            (false, b.read(&mut bbuf).await)
                        })
                        .await;
                        let n = match r {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        let w = if from_a { b.write_all(&abuf[..n]).await } else { a.write_all(&bbuf[..n]).await };
                        if w.is_err() {
                            return;
                        }
                    }
                }
            }
        })
        .expect("glommio executor (needs RLIMIT_MEMLOCK >= 512 KiB)")
        .join()
        .expect("executor");
}

/// One message in flight for `secs`; returns sorted round-trip times in ns.
fn client(addr: SocketAddr, shape: Shape, secs: f64) -> Vec<u64> {
    let mut caller = TcpStream::connect(addr).expect("connect");
    caller.set_nodelay(true).expect("nodelay");
    let callee = if shape == Shape::Relay {
        let mut b = TcpStream::connect(addr).expect("connect");
        b.set_nodelay(true).expect("nodelay");
        Some(thread::spawn(move || {
            let mut m = [0u8; MSG];
            while b.read_exact(&mut m).is_ok() {
                if b.write_all(&m).is_err() {
                    return;
                }
            }
        }))
    } else {
        None
    };
    let msg = [7u8; MSG];
    let mut back = [0u8; MSG];
    let mut times = Vec::with_capacity(1 << 20);
    let warmup = Instant::now() + Duration::from_millis(300);
    let end = warmup + Duration::from_secs_f64(secs);
    loop {
        let t = Instant::now();
        if t >= end {
            break;
        }
        caller.write_all(&msg).expect("write");
        caller.read_exact(&mut back).expect("read");
        if t >= warmup {
            times.push(t.elapsed().as_nanos() as u64);
        }
    }
    drop(caller);
    if let Some(c) = callee {
        c.join().expect("callee");
    }
    times.sort_unstable();
    times
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p) as usize).min(sorted.len() - 1);
    sorted[i] as f64 / 1000.0
}

fn main() {
    let secs: f64 = std::env::var("ECHO_FLOOR_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let servers = [Server::Thread, Server::Glommio { spin_us: 0 }, Server::Glommio { spin_us: 100 }];
    println!("loopback round trip, {MSG} B, one in flight, {secs} s per case (server pinned to CPU 0)");
    println!("{:<34} {:<6} {:>10} {:>10} {:>10}", "server", "shape", "p50 µs", "p99 µs", "trips");
    for shape in [Shape::Echo, Shape::Relay] {
        for server in servers {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
            let addr = listener.local_addr().expect("addr");
            let srv = thread::spawn(move || match server {
                Server::Thread => thread_server(listener, shape),
                Server::Glommio { spin_us } => glommio_server(listener, shape, spin_us),
            });
            let t = client(addr, shape, secs);
            srv.join().expect("server");
            let shape_name = if shape == Shape::Echo { "echo" } else { "relay" };
            println!(
                "{:<34} {:<6} {:>10.1} {:>10.1} {:>10}",
                server.name(),
                shape_name,
                pct(&t, 0.5),
                pct(&t, 0.99),
                t.len()
            );
        }
    }
}
