//! The prediction history: a ring of unconfirmed inputs, each with the state
//! predicted after it, in sequence order.
//!
//! The ring is allocated once (`max_prediction_history` slots); a slot is
//! overwritten in place (`Clone::clone_from`), so after the first lap nothing
//! is allocated even for states that hold heap data. Removing an entry from the
//! middle (a rejected input) shifts the later ones down by swapping slots.

/// One unconfirmed input (the design's `PredictionHistoryEntry`).
#[derive(Debug, Clone)]
pub struct Entry<S, I> {
    /// Its sequence number.
    pub seq: u32,
    /// The input.
    pub input: I,
    /// The state predicted after it.
    pub state: S,
}

/// A bounded ring of entries, oldest first.
#[derive(Debug)]
pub struct History<S, I> {
    slots: Vec<Entry<S, I>>,
    head: usize,
    len: usize,
    capacity: usize,
}

impl<S: Clone, I: Copy> History<S, I> {
    /// An empty history of `capacity` entries (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self { slots: Vec::with_capacity(capacity), head: 0, len: 0, capacity }
    }

    /// How many entries it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether it holds `capacity` entries.
    pub fn is_full(&self) -> bool {
        self.len == self.capacity
    }

    /// The most entries it holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn index(&self, i: usize) -> usize {
        (self.head + i) % self.capacity
    }

    /// The `i`th entry, oldest first.
    pub fn get(&self, i: usize) -> Option<&Entry<S, I>> {
        (i < self.len).then(|| &self.slots[self.index(i)])
    }

    /// The `i`th entry, oldest first, to change in place.
    pub fn get_mut(&mut self, i: usize) -> Option<&mut Entry<S, I>> {
        let index = self.index(i);
        (i < self.len).then(move || &mut self.slots[index])
    }

    /// The oldest entry.
    pub fn front(&self) -> Option<&Entry<S, I>> {
        self.get(0)
    }

    /// The newest entry.
    pub fn back(&self) -> Option<&Entry<S, I>> {
        self.len.checked_sub(1).and_then(|i| self.get(i))
    }

    /// Appends an entry; returns `false` (and stores nothing) when full.
    pub fn push(&mut self, seq: u32, input: I, state: &S) -> bool {
        if self.is_full() {
            return false;
        }
        let index = self.index(self.len);
        if index < self.slots.len() {
            let slot = &mut self.slots[index];
            slot.seq = seq;
            slot.input = input;
            slot.state.clone_from(state);
        } else {
            // First lap only: the slot is created (index == slots.len()).
            self.slots.push(Entry { seq, input, state: state.clone() });
        }
        self.len += 1;
        true
    }

    /// Forgets the oldest entry; returns its sequence number.
    pub fn pop_front(&mut self) -> Option<u32> {
        let seq = self.front()?.seq;
        self.head = (self.head + 1) % self.capacity;
        self.len -= 1;
        Some(seq)
    }

    /// Removes the `i`th entry, keeping the others in order.
    pub fn remove(&mut self, i: usize) -> bool {
        if i >= self.len {
            return false;
        }
        for j in i..self.len - 1 {
            let (a, b) = (self.index(j), self.index(j + 1));
            self.slots.swap(a, b);
        }
        self.len -= 1;
        true
    }

    /// The position of the entry with sequence number `seq`.
    pub fn position(&self, seq: u32) -> Option<usize> {
        // Sequence numbers increase along the ring: a binary search.
        let (mut lo, mut hi) = (0, self.len);
        while lo < hi {
            let mid = (lo + hi) / 2;
            let at = self.slots[self.index(mid)].seq;
            match at.cmp(&seq) {
                std::cmp::Ordering::Equal => return Some(mid),
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
            }
        }
        None
    }

    /// Forgets every entry (the slots stay allocated).
    pub fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }

    /// The entries, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Entry<S, I>> + '_ {
        (0..self.len).map(move |i| &self.slots[self.index(i)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(h: &History<u64, u8>) -> Vec<u32> {
        h.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn the_ring_wraps_and_keeps_order() {
        let mut h = History::<u64, u8>::new(3);
        assert!(h.push(1, 0, &10) && h.push(2, 0, &20) && h.push(3, 0, &30));
        assert!(!h.push(4, 0, &40), "full");
        assert_eq!(h.pop_front(), Some(1));
        assert!(h.push(4, 0, &40));
        assert_eq!(seqs(&h), [2, 3, 4]);
        assert_eq!(h.back().map(|e| e.state), Some(40));
        assert_eq!(h.position(3), Some(1));
        assert_eq!(h.position(1), None);
    }

    #[test]
    fn removing_from_the_middle_keeps_the_rest_in_order() {
        let mut h = History::<u64, u8>::new(4);
        for s in 1..=4 {
            h.push(s, 0, &u64::from(s));
        }
        h.pop_front();
        h.pop_front();
        h.push(5, 0, &5);
        h.push(6, 0, &6);
        assert!(h.remove(1));
        assert_eq!(seqs(&h), [3, 5, 6]);
        assert!(h.push(7, 0, &7));
        assert_eq!(seqs(&h), [3, 5, 6, 7]);
        assert_eq!(h.iter().map(|e| e.state).collect::<Vec<_>>(), [3, 5, 6, 7]);
        assert!(!h.remove(4));
        h.clear();
        assert!(h.is_empty() && h.front().is_none());
    }
}
