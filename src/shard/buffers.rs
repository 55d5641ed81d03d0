//! Buffers a shard's connections share, so that an idle connection holds none.
//!
//! - The *read scratch*: a connection with nothing buffered (no partial frame) and no burst
//!   going on reads into the shard's scratch, and only what arrived is copied into a buffer
//!   of its own (exactly that size). Sound because a read borrows the buffer only for one
//!   `poll_read` call (the `AsyncRead` contract): the scratch is never held across a wait.
//! - The *write pool*: a connection takes a write buffer when it has something to write and
//!   gives it back when it goes quiet. At most `limits::WRITE_POOL_BUFFERS` buffers of at most
//!   `limits::WRITE_BUF_KEEP_BYTES` each are kept; larger ones are freed.
//!
//! With both, an idle connection costs its task (`Conn` and the loop's state), its entries in
//! the core and the runtime's readiness poll: about 3 KiB of RSS (bench/RESULTS.md, "Scale").

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;

use bytes::BytesMut;
use futures_lite::AsyncRead;

use crate::limits;

pub(crate) struct Buffers {
    read_scratch: RefCell<Box<[u8]>>,
    write_pool: RefCell<Vec<Vec<u8>>>,
}

impl Default for Buffers {
    fn default() -> Self {
        Buffers {
            read_scratch: RefCell::new(vec![0; limits::READ_CHUNK_BYTES].into_boxed_slice()),
            write_pool: RefCell::new(Vec::with_capacity(limits::WRITE_POOL_BUFFERS)),
        }
    }
}

impl Buffers {
    /// Wait until `stream` has bytes and read up to `chunk` of them through the scratch,
    /// appending what came to `buf` (which then holds exactly that much more). Ok(0): EOF.
    pub(crate) async fn read_via_scratch<S: AsyncRead + Unpin>(
        &self,
        stream: &mut S,
        chunk: usize,
        buf: &mut BytesMut,
    ) -> io::Result<usize> {
        let chunk = chunk.clamp(1, limits::READ_CHUNK_BYTES);
        poll_fn(|cx| {
            // Borrowed for this poll only; no other task runs while it lasts.
            let mut scratch = self.read_scratch.borrow_mut();
            let polled = Pin::new(&mut *stream).poll_read(cx, &mut scratch[..chunk]);
            if let std::task::Poll::Ready(Ok(n)) = polled {
                buf.extend_from_slice(&scratch[..n]);
            }
            polled
        })
        .await
    }

    /// An empty write buffer of at least `need` bytes: the pool's last one if it is large
    /// enough, a new one otherwise.
    pub(crate) fn take_write(&self, need: usize) -> Vec<u8> {
        let mut pool = self.write_pool.borrow_mut();
        match pool.last() {
            Some(v) if v.capacity() >= need => pool.pop().unwrap_or_default(),
            _ => Vec::with_capacity(need),
        }
    }

    /// Give back a write buffer: kept for the next connection if it is small and the pool
    /// has room, freed otherwise.
    pub(crate) fn give_write(&self, mut wbuf: Vec<u8>) {
        if wbuf.capacity() == 0 || wbuf.capacity() > limits::WRITE_BUF_KEEP_BYTES {
            return;
        }
        let mut pool = self.write_pool.borrow_mut();
        if pool.len() < limits::WRITE_POOL_BUFFERS {
            wbuf.clear();
            pool.push(wbuf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_pool_keeps_small_buffers_up_to_its_count() {
        let b = Buffers::default();
        for _ in 0..limits::WRITE_POOL_BUFFERS + 5 {
            b.give_write(Vec::with_capacity(100));
        }
        assert_eq!(b.write_pool.borrow().len(), limits::WRITE_POOL_BUFFERS);
        // Too large, or never allocated: not kept.
        let b = Buffers::default();
        b.give_write(Vec::with_capacity(limits::WRITE_BUF_KEEP_BYTES + 1));
        b.give_write(Vec::new());
        assert!(b.write_pool.borrow().is_empty());
        // A pooled buffer comes back empty, with its capacity.
        let mut v = Vec::with_capacity(64);
        v.extend_from_slice(b"leftover");
        b.give_write(v);
        let w = b.take_write(64);
        assert!(w.is_empty() && w.capacity() >= 64);
        // A pooled buffer too small for the need is left in the pool.
        b.give_write(Vec::with_capacity(100));
        let w = b.take_write(4096);
        assert!(w.capacity() >= 4096);
        assert_eq!(b.write_pool.borrow().len(), 1);
    }

    #[test]
    fn scratch_read_appends_exactly_what_came() {
        let b = Buffers::default();
        let mut src: &[u8] = b"hello world";
        let mut buf = BytesMut::new();
        let n = futures_lite::future::block_on(b.read_via_scratch(&mut src, 5, &mut buf)).unwrap();
        assert_eq!((n, &buf[..]), (5, &b"hello"[..]));
        // Sized to what came (rounded up a little by the allocation), not to a read chunk.
        assert!(buf.capacity() < 64, "{}", buf.capacity());
        let n = futures_lite::future::block_on(b.read_via_scratch(&mut src, 64, &mut buf)).unwrap();
        assert_eq!((n, &buf[..]), (6, &b"hello world"[..]));
    }
}
