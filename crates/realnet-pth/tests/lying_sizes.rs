//! Sizes written in a file are claims: parsing must not reserve what a header says before the data
//! is there. The fixture is a fuzzer find (a torch.save zip whose central directory claims a 4 GB
//! entry); a counting allocator records the largest single allocation.
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;
static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static A: Counting = Counting;

#[test]
fn a_claimed_4gb_entry_allocates_no_more_than_the_file() {
    let bytes = include_bytes!("data/claims_4gb_entry.pth");
    let _ = realnet_pth::parse_pth(bytes);
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(
        largest < 1 << 20,
        "largest allocation {largest} bytes for a {}-byte file",
        bytes.len()
    );
}
