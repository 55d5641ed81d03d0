//! Socket read/write helpers shared by every protocol: bounded reads (`read_until`), read
//! buffer management (`prepare_read*`, `next_chunk`) and writes with a deadline
//! (`write_all_by`).
//!
//! Protocol-agnostic: nothing here parses what it reads.

use std::io;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_lite::future::or;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::limits;

/// Read until `done(buf)` or the deadline; false on EOF, error or timeout.
pub(crate) async fn read_until<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    deadline: Instant,
    done: impl Fn(&[u8]) -> bool,
) -> bool {
    while !done(buf) {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        let start = prepare_read(buf, limits::READ_CHUNK_MIN_BYTES);
        let r = or(async { Some(stream.read(&mut buf[start..]).await) }, async {
            glommio::timer::sleep(deadline - now).await;
            None
        })
        .await;
        let n = match r {
            Some(Ok(n)) if n > 0 => n,
            _ => {
                buf.truncate(start);
                return false;
            }
        };
        buf.truncate(start + n);
    }
    true
}

/// Make room for a read of up to about `chunk` bytes; returns where the new bytes start.
/// The caller truncates to what was actually read.
pub(crate) fn prepare_read(buf: &mut BytesMut, chunk: usize) -> usize {
    let mut spare_init = false;
    prepare_read_tracked(buf, chunk, &mut spare_init)
}

/// [`prepare_read`] for a buffer read many times: `spare_init` remembers that the spare
/// capacity is already initialised, so it is zeroed once per allocation instead of on every
/// wake-up (zeroing 64 KiB per wake was a quarter of the router's CPU in a 1→1000 fan-out).
pub(crate) fn prepare_read_tracked(buf: &mut BytesMut, chunk: usize, spare_init: &mut bool) -> usize {
    if buf.capacity() - buf.len() < chunk / 2 {
        buf.reserve(chunk);
        // `reserve` may have moved or grown the allocation.
        *spare_init = false;
    }
    let start = buf.len();
    let end = buf.capacity();
    if *spare_init {
        // SAFETY: `[start, end)` lies in the allocation an earlier `resize` zero-filled up to
        // its capacity (no `reserve` since, or `spare_init` would be false). Since then the
        // buffer was only read into, truncated, and split or advanced at the front by the
        // decoders; none of these de-initialises bytes, so every byte up to `end` is
        // initialised.
        unsafe { buf.set_len(end) };
    } else {
        buf.resize(end, 0);
        *spare_init = true;
    }
    start
}

/// The next read size after a read of `n` bytes into `spare` bytes of room: double while
/// reads fill the buffer, halve after a small read (never outside the configured bounds).
pub(crate) fn next_chunk(chunk: usize, n: usize, spare: usize) -> usize {
    if n == spare {
        (chunk * 2).min(limits::READ_CHUNK_BYTES)
    } else if n < chunk / 4 {
        (chunk / 2).max(limits::READ_CHUNK_MIN_BYTES)
    } else {
        chunk
    }
}

/// Write all of `data` and flush; fails if one write (or the flush) makes no progress for
/// `deadline` (TimedOut). A plain socket's flush is ready at once (the timer is never
/// polled); a TLS stream's flush writes the records rustls still holds, which a peer that
/// stopped reading can stall.
pub(crate) async fn write_all_by<S: AsyncWrite + Unpin>(
    stream: &mut S,
    data: &[u8],
    deadline: Duration,
) -> io::Result<()> {
    let mut pos = 0;
    while pos < data.len() {
        let w = or(async { Some(stream.write(&data[pos..]).await) }, async {
            glommio::timer::sleep(deadline).await;
            None
        })
        .await;
        match w {
            Some(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
            Some(Ok(n)) => pos += n,
            Some(Err(e)) => return Err(e),
            None => return Err(io::ErrorKind::TimedOut.into()),
        }
    }
    let flushed = or(async { Some(stream.flush().await) }, async {
        glommio::timer::sleep(deadline).await;
        None
    })
    .await;
    flushed.unwrap_or_else(|| Err(io::ErrorKind::TimedOut.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_chunk_grows_while_full_and_shrinks_when_small() {
        let (min, max) = (limits::READ_CHUNK_MIN_BYTES, limits::READ_CHUNK_BYTES);
        let mut chunk = min;
        // Reads that fill the room double the chunk up to the maximum.
        for _ in 0..10 {
            chunk = next_chunk(chunk, chunk, chunk);
        }
        assert_eq!(chunk, max);
        // Small reads halve it back down to the minimum.
        for _ in 0..10 {
            chunk = next_chunk(chunk, 10, chunk);
        }
        assert_eq!(chunk, min);
        // A read of a middling size keeps it.
        assert_eq!(next_chunk(16 * 1024, 8 * 1024, 16 * 1024), 16 * 1024);
    }

    #[test]
    fn tracked_prepare_reuses_initialised_spare() {
        // Goal: the second prepare after a read that filled nothing must not re-zero, and the
        // bytes it exposes are the zeros (or read data) already there.
        let mut buf = BytesMut::new();
        let mut init = false;
        let start = prepare_read_tracked(&mut buf, 4096, &mut init);
        assert!(init);
        buf[start..start + 3].copy_from_slice(b"abc");
        buf.truncate(start + 3);
        let _ = buf.split_to(2); // a decoder consumed a frame
        let start = prepare_read_tracked(&mut buf, 4096, &mut init);
        assert_eq!(start, 1);
        assert_eq!(&buf[..1], b"c");
        assert!(buf[1..].iter().all(|&b| b == 0), "spare still zeroed");
        // Forcing a reallocation clears the flag and zero-fills again.
        buf.truncate(1);
        let start = prepare_read_tracked(&mut buf, 1 << 20, &mut init);
        assert!(buf.len() - start >= 1 << 19);
        assert!(buf[start..].iter().all(|&b| b == 0));
    }

    #[test]
    fn prepare_read_reserves_about_one_chunk() {
        let mut buf = BytesMut::new();
        let start = prepare_read(&mut buf, 4096);
        assert_eq!(start, 0);
        assert!(buf.len() >= 4096 && buf.len() < 64 * 1024, "{}", buf.len());
        buf.truncate(10);
        let start = prepare_read(&mut buf, 4096);
        assert_eq!(start, 10);
    }
}
