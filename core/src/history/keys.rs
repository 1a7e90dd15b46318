//! The coalescing-key index of a room log: from a key to the latest retained event carrying it,
//! the key bytes read from the event's own storage, never copied.

use alloc::boxed::Box;
use alloc::vec;

/// 32-bit FNV-1a. Not keyed: colliding keys can be chosen, which costs probes in the index (at
/// most `max_events` of them) but never correctness, since candidates are compared byte for
/// byte.
pub(super) fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// A slot of the key index: the offset of the latest retained event with some key (0 when the
/// slot is empty, since offsets start at 1) and that key's hash.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct KeySlot {
    pub(super) offset: u64,
    hash: u32,
}

/// Open-addressing map (linear probing, backward-shift deletion, so no tombstones) from a
/// coalescing key to the offset of the latest retained event carrying it. The key bytes are not
/// copied: they are read from the event's own storage in the ring. It holds at most one slot per
/// retained event, and has at least twice as many slots, so probes always end at an empty slot.
///
/// The slots are allocated at the first key, so a log without keyed events never pays for them.
#[derive(Debug, Clone)]
pub(super) struct KeyIndex {
    pub(super) slots: Box<[KeySlot]>,
    /// The number of slots once allocated (a power of two).
    size: usize,
    mask: usize,
}

impl KeyIndex {
    pub(super) fn new(max_events: usize) -> Self {
        let n = max_events
            .saturating_mul(2)
            .checked_next_power_of_two()
            .unwrap_or(1 << (usize::BITS - 1));
        KeyIndex {
            slots: Box::default(),
            size: n,
            mask: n - 1,
        }
    }

    /// Allocates the slots, if not yet.
    pub(super) fn allocate(&mut self) {
        if self.slots.is_empty() {
            self.slots = vec![KeySlot::default(); self.size].into_boxed_slice();
        }
    }

    pub(super) fn home(&self, hash: u32) -> usize {
        hash as usize & self.mask
    }

    /// Points `hash`'s key (recognised by `same_key(offset)`) at `offset`, returning the offset it
    /// pointed at before, if any.
    pub(super) fn upsert(
        &mut self,
        hash: u32,
        offset: u64,
        same_key: impl Fn(u64) -> bool,
    ) -> Option<u64> {
        self.allocate();
        let mut i = self.home(hash);
        for _ in 0..self.slots.len() {
            let slot = self.slots.get_mut(i)?;
            if slot.offset == 0 {
                *slot = KeySlot { offset, hash };
                return None;
            }
            if slot.hash == hash && same_key(slot.offset) {
                let previous = slot.offset;
                slot.offset = offset;
                return Some(previous);
            }
            i = (i + 1) & self.mask;
        }
        None
    }

    /// Removes the entry pointing at `offset` (whose key hashes to `hash`), if there is one.
    pub(super) fn remove(&mut self, hash: u32, offset: u64) {
        let mut i = self.home(hash);
        let mut found = None;
        for _ in 0..self.slots.len() {
            match self.slots.get(i) {
                Some(s) if s.offset == offset => {
                    found = Some(i);
                    break;
                }
                Some(s) if s.offset != 0 => i = (i + 1) & self.mask,
                _ => return,
            }
        }
        let Some(mut hole) = found else { return };
        // Backward shift: pull later members of the probe run into the hole when their home
        // allows it, so that every key stays reachable from its home without tombstones.
        let mut j = hole;
        for _ in 0..self.slots.len() {
            j = (j + 1) & self.mask;
            let Some(&s) = self.slots.get(j) else { break };
            if s.offset == 0 {
                break;
            }
            let home = self.home(s.hash);
            // `s` may move to `hole` if its home is not cyclically within (hole, j].
            let dist_home = j.wrapping_sub(home) & self.mask;
            let dist_hole = j.wrapping_sub(hole) & self.mask;
            if dist_home >= dist_hole {
                if let Some(h) = self.slots.get_mut(hole) {
                    *h = s;
                }
                hole = j;
            }
        }
        if let Some(h) = self.slots.get_mut(hole) {
            *h = KeySlot::default();
        }
    }
}
