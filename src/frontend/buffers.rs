//! Spare session buffers, kept per thread.
//!
//! A session between transactions in transaction pooling holds nothing for
//! either side: its input and output buffers go back here while it waits
//! for its client, and it takes buffers again once the client speaks. An
//! idle client then costs no buffer memory (each buffer would otherwise
//! keep a page or two resident: the bytes written at its start and the
//! allocator's mark after its end), and busy sessions share a few buffers
//! the CPU cache already holds, most recently returned first.

use std::cell::RefCell;

use bytes::BytesMut;

/// The size a session buffer starts at.
const BUFFER_SIZE: usize = 16 * 1024;

/// Spare buffers kept per thread at most; more are freed.
const MAX_SPARE: usize = 256;

/// A buffer larger than this (grown for a big message) is freed rather
/// than kept.
const MAX_KEPT_CAPACITY: usize = 4 * BUFFER_SIZE;

/// A buffer with less room than this has used up some of its memory (see
/// [`rewind`]).
const REWIND_BELOW: usize = BUFFER_SIZE - 1024;

thread_local! {
    static SPARE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer of at least [`BUFFER_SIZE`] bytes: a spare one of this
/// thread's if there is one.
pub(super) fn take() -> BytesMut {
    let mut buf = BytesMut::new();
    take_into([&mut buf]);
    buf
}

/// Gives each of `bufs` that has no memory a buffer as [`take`] does.
pub(super) fn take_into<const N: usize>(mut bufs: [&mut BytesMut; N]) {
    let _ = SPARE.try_with(|spare| {
        let mut spare = spare.borrow_mut();
        for buf in bufs.iter_mut() {
            if buf.capacity() == 0
                && let Some(kept) = spare.pop()
            {
                **buf = kept;
            }
        }
    });
    // No spare left (or the thread is ending): new memory.
    for buf in bufs {
        if buf.capacity() == 0 {
            *buf = BytesMut::with_capacity(BUFFER_SIZE);
        }
    }
}

/// Gives each of `bufs` up, leaving an empty buffer without memory in its
/// place; the memory is kept for [`take`] when the buffer is empty and has
/// not grown far. A buffer whose start has moved on is first moved back to
/// the beginning of its memory, which only works when no message split off
/// it still lives there; one that cannot be is freed. Nothing happens to a
/// buffer that holds bytes.
pub(super) fn give_back<const N: usize>(bufs: [&mut BytesMut; N]) {
    let _ = SPARE.try_with(|spare| {
        let mut spare = spare.borrow_mut();
        for buf in bufs {
            if !buf.is_empty() || buf.capacity() == 0 {
                continue;
            }
            let mut buf = std::mem::take(buf);
            if buf.capacity() > MAX_KEPT_CAPACITY {
                continue;
            }
            rewind(&mut buf);
            if buf.capacity() >= REWIND_BELOW && spare.len() < MAX_SPARE {
                spare.push(buf);
            }
        }
    });
}

/// Moves the start of an empty buffer back to the beginning of its
/// allocation (unless a message split off it still shares the memory), so
/// that the next reads and writes reuse the cache lines the last ones
/// warmed instead of moving on through the whole allocation: a session
/// touches a few hundred bytes of its buffers per transaction, and would
/// otherwise walk through tens of kilobytes of cold memory before the
/// space is reused. Done once about a kilobyte has been used up (a buffer
/// with less room than [`REWIND_BELOW`]), so the check is cheap at every
/// other call; no bytes are copied (the buffer is empty).
#[inline]
pub(super) fn rewind(buf: &mut BytesMut) {
    if buf.is_empty() && buf.capacity() < REWIND_BELOW {
        let _ = buf.try_reclaim(buf.capacity() + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Buf, BufMut};

    fn spare_count() -> usize {
        SPARE.with(|s| s.borrow().len())
    }

    /// A buffer of this thread's after `used` bytes went through it; the
    /// split-off bytes are returned, alive.
    fn used(used: usize) -> (BytesMut, BytesMut) {
        let mut buf = take();
        buf.extend_from_slice(&vec![b'x'; used]);
        let message = buf.split_to(used);
        (buf, message)
    }

    #[test]
    fn a_buffer_that_used_up_its_room_comes_back_from_its_start() {
        let (mut buf, message) = used(2000);
        let start = message.as_ptr() as usize;
        drop(message);
        give_back([&mut buf]);
        assert_eq!(buf.capacity(), 0, "the session keeps no memory");
        let again = take();
        assert_eq!(
            again.as_ptr() as usize,
            start,
            "the same memory, from its start"
        );
        assert!(again.capacity() >= BUFFER_SIZE && again.is_empty());
    }

    #[test]
    fn a_buffer_that_used_little_is_kept_as_it_is() {
        let (mut buf, message) = used(14);
        let at = buf.as_ptr() as usize;
        give_back([&mut buf]);
        let mut again = take();
        assert_eq!(again.as_ptr() as usize, at);
        // The message split off it keeps its bytes while the buffer is
        // written again: they share the allocation, not the bytes.
        again.extend_from_slice(b"next");
        assert_eq!(&message[..], &[b'x'; 14][..]);
        assert_eq!(&again[..], b"next");
    }

    #[test]
    fn buffers_holding_bytes_shared_far_on_or_grown_are_not_kept() {
        let before = spare_count();
        let mut full = take();
        full.extend_from_slice(b"left for later");
        give_back([&mut full]);
        assert_eq!(&full[..], b"left for later", "bytes are never dropped");

        let (mut shared, message) = used(2000);
        give_back([&mut shared]);
        assert_eq!(shared.capacity(), 0);
        assert_eq!(
            spare_count(),
            before,
            "memory a message still uses is not reused"
        );
        assert_eq!(message.len(), 2000);

        let mut grown = BytesMut::with_capacity(MAX_KEPT_CAPACITY * 2);
        give_back([&mut grown]);
        assert_eq!(spare_count(), before, "a grown buffer is freed");
    }

    #[test]
    fn take_into_fills_only_buffers_without_memory() {
        let mut kept = BytesMut::with_capacity(64);
        kept.extend_from_slice(b"mine");
        let mut empty = BytesMut::new();
        take_into([&mut kept, &mut empty]);
        assert_eq!(&kept[..], b"mine");
        assert_eq!(kept.capacity(), 64);
        assert!(empty.capacity() >= BUFFER_SIZE);
    }

    #[test]
    fn an_emptied_buffer_starts_again_at_the_beginning_of_its_memory() {
        let mut buf = BytesMut::with_capacity(16 * 1024);
        let start = buf.as_ptr();
        // Filled and sent in pieces, as `write_some` does.
        for _ in 0..20 {
            buf.put_slice(&[7; 100]);
            buf.advance(100);
        }
        assert_ne!(buf.as_ptr(), start);
        rewind(&mut buf);
        assert_eq!(buf.as_ptr(), start);
        assert_eq!(buf.capacity(), 16 * 1024);
    }

    #[test]
    fn a_buffer_is_not_moved_while_it_holds_bytes_or_shares_its_memory() {
        let mut buf = BytesMut::with_capacity(16 * 1024);
        let start = buf.as_ptr();
        buf.put_slice(&[1; 2000]);
        let msg = buf.split_to(1990).freeze();
        // Ten bytes of the next message are in.
        rewind(&mut buf);
        assert_eq!(&buf[..], &[1; 10]);
        buf.advance(10);
        // Empty, but the message split off still lives in the memory.
        rewind(&mut buf);
        assert_ne!(buf.as_ptr(), start);
        buf.put_slice(&[2; 100]);
        assert!(msg.iter().all(|&b| b == 1));
        buf.advance(100);
        drop(msg);
        rewind(&mut buf);
        assert_eq!(buf.as_ptr(), start);
        assert_eq!(buf.capacity(), 16 * 1024);
    }
}
