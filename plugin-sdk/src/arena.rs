//! The plugin's global allocator: a call arena in front of the default allocator.
//!
//! A filter call allocates a few dozen short-lived blocks — the strings the gateway lowers
//! into guest memory, the SDK's views, the changes sent back — and frees all of them by the
//! time the gateway's post-return step ends the call. Behind Rust's allocator shims,
//! wasi-libc's dlmalloc spent more instructions on those than the filters themselves.
//!
//! The arena hands out blocks by bumping a pointer through a fixed region and counts the
//! blocks still live; freeing one only decrements the count. When the count is zero nothing
//! in the region is in use, so the next allocation starts again at its beginning. Memory is
//! reused only then, which keeps it sound whatever a filter does: a block that outlives its
//! call (a cache entry, say) pins the region, and allocations that no longer fit go to the
//! default allocator until everything in the region is freed again. Allocations made while
//! the arena is off (during `init`, where the filter's long-lived state is built) always go
//! to the default allocator.
//!
//! The only `unsafe` code of the SDK: a global allocator cannot be written without it.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout};
use std::cell::{Cell, UnsafeCell};
use std::mem::MaybeUninit;

/// Bytes in the arena: enough for the blocks of a call with a few dozen headers.
pub const ARENA_BYTES: usize = 64 << 10;

/// A bump arena of `N` bytes in front of `F`. Single-threaded only (a wasm component instance
/// is): the cells are not synchronised.
pub struct CallArena<F, const N: usize> {
    region: UnsafeCell<[MaybeUninit<u8>; N]>,
    /// Offset of the first free byte.
    next: Cell<usize>,
    /// Blocks handed out and not yet freed.
    live: Cell<usize>,
    /// Off until the filter is built.
    enabled: Cell<bool>,
    fallback: F,
}

// SAFETY: only instantiated as the global allocator of single-threaded wasm targets (see
// `lib.rs`) and in single-threaded unit tests; no two threads ever reach the cells.
unsafe impl<F: Sync, const N: usize> Sync for CallArena<F, N> {}

impl<F, const N: usize> CallArena<F, N> {
    /// An arena, off, in front of `fallback`.
    pub const fn new(fallback: F) -> Self {
        CallArena {
            region: UnsafeCell::new([MaybeUninit::uninit(); N]),
            next: Cell::new(0),
            live: Cell::new(0),
            enabled: Cell::new(false),
            fallback,
        }
    }

    /// Serve allocations from the arena from now on.
    pub fn enable(&self) {
        self.enabled.set(true);
    }

    fn base(&self) -> usize {
        self.region.get() as usize
    }

    fn owns(&self, ptr: *mut u8) -> bool {
        let at = ptr as usize;
        at >= self.base() && at < self.base() + N
    }

    /// A block of `layout` from the arena, if it fits.
    fn bump(&self, layout: Layout) -> Option<*mut u8> {
        if !self.enabled.get() {
            return None;
        }
        if self.live.get() == 0 {
            self.next.set(0);
        }
        let base = self.base();
        let start = (base + self.next.get()).checked_next_multiple_of(layout.align())? - base;
        let end = start.checked_add(layout.size())?;
        if end > N {
            return None;
        }
        self.next.set(end);
        self.live.set(self.live.get() + 1);
        Some((base + start) as *mut u8)
    }
}

// SAFETY: blocks from the region never overlap while live (the bump offset only moves back
// to the start when no block is live), are aligned as asked and lie within the region; every
// other block comes from and returns to `fallback`, recognised by its address.
unsafe impl<F: GlobalAlloc, const N: usize> GlobalAlloc for CallArena<F, N> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match self.bump(layout) {
            Some(ptr) => ptr,
            // SAFETY: the caller's contract for `layout` is passed on unchanged.
            None => unsafe { self.fallback.alloc(layout) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if self.owns(ptr) {
            self.live.set(self.live.get() - 1);
        } else {
            // SAFETY: `ptr` did not come from the region, so it came from `fallback`.
            unsafe { self.fallback.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !self.owns(ptr) {
            // SAFETY: as in `dealloc`.
            return unsafe { self.fallback.realloc(ptr, layout, new_size) };
        }
        let offset = ptr as usize - self.base();
        // The last block handed out grows or shrinks in place while it fits.
        if offset + layout.size() == self.next.get() && offset + new_size <= N {
            self.next.set(offset + new_size);
            return ptr;
        }
        // SAFETY: `new_size` with the old alignment is a valid layout (the caller's
        // contract); the old block stays valid until it is copied and freed.
        unsafe {
            let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
            let new = self.alloc(new_layout);
            if !new.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::System;

    type Small = CallArena<System, 256>;

    fn layout(size: usize) -> Layout {
        Layout::from_size_align(size, 8).unwrap()
    }

    #[test]
    fn off_until_enabled() {
        let arena = Small::new(System);
        unsafe {
            let p = arena.alloc(layout(16));
            assert!(!arena.owns(p));
            arena.dealloc(p, layout(16));
        }
    }

    #[test]
    fn rewinds_only_when_every_block_is_free() {
        let arena = Small::new(System);
        arena.enable();
        unsafe {
            let a = arena.alloc(layout(16));
            let b = arena.alloc(layout(16));
            assert!(arena.owns(a) && arena.owns(b));
            assert_ne!(a, b);
            arena.dealloc(a, layout(16));
            // `b` is live: no reuse of `a`'s bytes.
            let c = arena.alloc(layout(16));
            assert!(c > b);
            arena.dealloc(b, layout(16));
            arena.dealloc(c, layout(16));
            // All free: the next block starts at the beginning again.
            assert_eq!(arena.alloc(layout(16)), a);
        }
    }

    #[test]
    fn a_surviving_block_pins_the_region_and_the_rest_falls_back() {
        let arena = Small::new(System);
        arena.enable();
        unsafe {
            let kept = arena.alloc(layout(200));
            kept.write_bytes(7, 200);
            let overflow = arena.alloc(layout(100));
            assert!(!arena.owns(overflow), "does not fit next to the live block");
            overflow.write_bytes(1, 100);
            arena.dealloc(overflow, layout(100));
            assert!((0..200).all(|i| *kept.add(i) == 7), "live block untouched");
            arena.dealloc(kept, layout(200));
            assert!(arena.owns(arena.alloc(layout(100))));
        }
    }

    #[test]
    fn the_plugin_arena_serves_a_call_of_small_blocks_then_starts_over() {
        let arena = Box::new(CallArena::<System, ARENA_BYTES>::new(System));
        arena.enable();
        unsafe {
            let blocks: Vec<*mut u8> = (0..1000).map(|_| arena.alloc(layout(24))).collect();
            assert!(blocks.iter().all(|&p| arena.owns(p)));
            for &p in &blocks {
                arena.dealloc(p, layout(24));
            }
            assert_eq!(arena.alloc(layout(24)), blocks[0]);
        }
    }

    #[test]
    fn blocks_are_aligned() {
        let arena = Small::new(System);
        arena.enable();
        unsafe {
            let _ = arena.alloc(Layout::from_size_align(3, 1).unwrap());
            let p = arena.alloc(Layout::from_size_align(8, 32).unwrap());
            assert!(arena.owns(p));
            assert_eq!(p as usize % 32, 0);
        }
    }

    #[test]
    fn realloc_grows_the_last_block_in_place_and_moves_others() {
        let arena = Small::new(System);
        arena.enable();
        unsafe {
            let a = arena.alloc(layout(8));
            a.write_bytes(9, 8);
            let grown = arena.realloc(a, layout(8), 64);
            assert_eq!(grown, a, "last block grows in place");
            let b = arena.alloc(layout(8));
            let moved = arena.realloc(a, layout(64), 128);
            assert_ne!(moved, a);
            assert!((0..8).all(|i| *moved.add(i) == 9), "contents copied");
            let big = arena.realloc(moved, layout(128), 1024);
            assert!(!arena.owns(big), "too big for the region: falls back");
            assert!((0..8).all(|i| *big.add(i) == 9));
            arena.dealloc(big, layout(1024));
            arena.dealloc(b, layout(8));
            assert_eq!(arena.alloc(layout(8)), a, "everything freed");
        }
    }
}
