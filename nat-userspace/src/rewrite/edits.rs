//! A bounded list of byte-range replacements, applied in place in one pass over the
//! buffer (the message may grow into its tailroom or shrink). No allocation per message:
//! the list's storage is allocated once, at its full capacity, by its owner (a worker's
//! pipeline, or one per thread for [`super::rewrite_message`]) and reused; replacement
//! texts are short (addresses, ports, a length).

use alloc::vec::Vec;

use crate::sip::addr::Text;

/// The longest message the capacity is sized for: a UDP payload is at most 65,527 bytes.
pub const MAX_MESSAGE: usize = 65_536;

/// Most replacements one message may need. Every edit replaces at least 4 bytes of syntax
/// of its own that no other edit shares (`sip:` and a host for a URI, `a=rtcp:` and a
/// digit for a port, the digits and their header for a Content-Length, ...), so a message
/// of [`MAX_MESSAGE`] bytes never fills the list: no real message is refused for having
/// too many addresses. (16,384 edits of 68 bytes: 1.1 MB of address space per list, of
/// which only the pages a message uses are ever touched.)
pub const MAX_EDITS: usize = MAX_MESSAGE / 4;

/// What an edit rewrites (counted per kind in [`super::Changes`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RewrittenField {
    RequestUri,
    Via,
    Contact,
    Route,
    RecordRoute,
    FromTo,
    SdpConnection,
    SdpOrigin,
    SdpRtcp,
    SdpMediaPort,
    ContentLength,
}

#[derive(Clone, Copy, Debug)]
pub struct Edit {
    pub start: u32,
    pub end: u32,
    pub text: Text,
    pub field: RewrittenField,
}

impl Edit {
    #[inline]
    fn delta(&self) -> isize {
        self.text.len() as isize - (self.end - self.start) as isize
    }
}

/// The edit list. Its storage has [`MAX_EDITS`] slots from the start: pushing never
/// reallocates.
pub struct Edits {
    items: Vec<Edit>,
}

/// The list is full.
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

impl Default for Edits {
    fn default() -> Self {
        Edits::new()
    }
}

impl Edits {
    /// An empty list with room for [`MAX_EDITS`] edits (the one allocation it makes).
    pub fn new() -> Edits {
        Edits {
            items: Vec::with_capacity(MAX_EDITS),
        }
    }

    /// A list without storage, standing in while the real one is lent out: it refuses
    /// every edit. Allocates nothing.
    pub const fn unallocated() -> Edits {
        Edits { items: Vec::new() }
    }

    /// Empties the list (the storage stays).
    #[inline]
    pub fn clear(&mut self) {
        self.items.clear();
    }

    #[inline]
    pub fn push(
        &mut self,
        start: usize,
        end: usize,
        text: Text,
        field: RewrittenField,
    ) -> Result<(), Full> {
        self.push_ref(start, end, &text, field)
    }

    /// [`Self::push`] of a text the caller keeps (copied once, into the list).
    #[inline]
    pub fn push_ref(
        &mut self,
        start: usize,
        end: usize,
        text: &Text,
        field: RewrittenField,
    ) -> Result<(), Full> {
        if self.items.len() >= MAX_EDITS.min(self.items.capacity()) {
            return Err(Full);
        }
        self.items.push(Edit {
            start: start as u32,
            end: end as u32,
            text: *text,
            field,
        });
        Ok(())
    }

    /// [`Self::push`] of an edit that may start before edits already in the list (a
    /// Content-Length, settled after the body's edits): inserted in start order, so that
    /// a list collected in order stays sorted and [`Self::apply`] need not sort it (a
    /// move of the few edits after it instead of a sort of the whole list).
    #[inline]
    pub fn push_in_order(
        &mut self,
        range: (usize, usize),
        text: Text,
        field: RewrittenField,
    ) -> Result<(), Full> {
        self.insert_in_order(range, text, field).map(|_| ())
    }

    /// [`Self::push_in_order`], returning the edit's index.
    #[inline]
    fn insert_in_order(
        &mut self,
        range: (usize, usize),
        text: Text,
        field: RewrittenField,
    ) -> Result<usize, Full> {
        let (start, end) = range;
        self.push_ref(start, end, &text, field)?;
        let last = self.items.len() - 1;
        // (The usual place, last, told by the edit before it without the search: the
        // same place, as the list before it is in start order.)
        let at = match last.checked_sub(1).map(|p| self.items[p].start as usize) {
            Some(s) if s > start => {
                self.items[..last].partition_point(|e| e.start as usize <= start)
            }
            _ => last,
        };
        // The edits after it moved up by one, one copy each (a `rotate_right` was a
        // `memmove` call for the few edits of an SDP body).
        // (Nothing moves when it goes last, as a Content-Length after the headers'
        // edits does: the copy of it out and back was ~16 instructions.)
        if at < last {
            let new = self.items[last];
            for i in (at + 1..=last).rev() {
                self.items[i] = self.items[i - 1];
            }
            self.items[at] = new;
        }
        Ok(at)
    }

    /// A slot for an edit of `range` that is settled later (a Content-Length, known only
    /// after the body's edits): an empty edit inserted in start order now, while the
    /// edits after it are few (the body's come after it), its text written through [`Self::text_mut`] or
    /// taken out by [`Self::remove`]. Its index, or `None` when the list is full (nothing
    /// pushed). (Inserting the settled edit in order after the body's edits moved each of
    /// them, ~70 bytes apiece.)
    #[inline]
    pub fn reserve(&mut self, range: (usize, usize), field: RewrittenField) -> Option<usize> {
        self.insert_in_order(range, Text::default(), field).ok()
    }

    /// The text of the reserved edit `i` ([`Self::reserve`]), empty, to be written in
    /// place (a text built aside was zeroed whole and then copied whole into the edit).
    #[inline]
    pub fn text_mut(&mut self, i: usize) -> Option<&mut Text> {
        self.items.get_mut(i).map(|e| &mut e.text)
    }

    /// Takes out edit `i` (a reserved edit that is not wanted).
    #[inline]
    pub fn remove(&mut self, i: usize) {
        if i < self.items.len() {
            self.items.remove(i);
        }
    }

    /// Drops the edits after the first `n` (a parse that pushed some and then gave way
    /// to another takes them back).
    #[inline]
    pub fn truncate(&mut self, n: usize) {
        self.items.truncate(n);
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Edit> {
        self.items.iter()
    }

    /// Sum of size changes of the edits inside `[start, end)`.
    pub fn delta_within(&self, start: usize, end: usize) -> isize {
        self.items
            .iter()
            .filter(|e| e.start as usize >= start && (e.end as usize) <= end)
            .map(Edit::delta)
            .sum()
    }

    /// Applies all edits to `buf[..len]` in place; the result may use `buf` up to its full
    /// length (tailroom). Returns the new length, or `None` (buffer untouched) when the
    /// result would not fit. Edits must not overlap.
    pub fn apply(&mut self, buf: &mut [u8], len: usize) -> Option<usize> {
        // The running sums of the deltas: where the segment after each edit moves; and
        // whether each edit starts at or after the end of the one before (sorted and
        // disjoint), checked in the same pass.
        // (Each flag is the sign bit of an OR over the edits: an edit out of order
        // starts before the end of the one before, a negative difference; a running
        // sum below zero is negative, one above zero has a negative negation. The
        // positions are `u32`s, so their differences fit in an `i64`, and the sums
        // are far from `isize::MIN`. One `or` per flag instead of a compare and an
        // `and` or `or`.)
        let sums = |edits: &[Edit]| {
            let (mut total, mut left, mut right) = (0isize, 0isize, 0isize);
            let (mut prev_end, mut order) = (0i64, 0i64);
            for e in edits {
                order |= i64::from(e.start) - prev_end;
                prev_end = i64::from(e.end);
                total += e.delta();
                left |= total;
                right |= total.wrapping_neg();
            }
            (order >= 0, total, left < 0, right < 0)
        };
        let (mut in_order, mut total, mut ever_left, mut ever_right) = sums(&self.items);
        if !in_order {
            // Collected in scan order, which is nearly sorted: only a list that is not
            // is sorted (overlapping edits are refused, sorted or not).
            if self.items.windows(2).all(|w| w[0].start <= w[1].start) {
                return None;
            }
            self.items.sort_unstable_by_key(|e| e.start);
            (in_order, total, ever_left, ever_right) = sums(&self.items);
            if !in_order {
                return None;
            }
        }
        let edits = &self.items[..];
        let new_len = len.checked_add_signed(total)?;
        if new_len > buf.len() || edits.last().is_some_and(|e| e.end as usize > len) {
            return None;
        }
        match (ever_left, ever_right) {
            (_, false) => forward(edits, buf, len),
            (false, true) => backward(edits, buf, len, total),
            (true, true) => mixed(edits, buf, len, total),
        }
        Some(new_len)
    }
}

/// Applies sorted, disjoint `edits` when no segment moves right: front to back, each
/// segment moved, then the edit after it written (which ends at or before the next,
/// unmoved, segment's start).
fn forward(edits: &[Edit], buf: &mut [u8], len: usize) {
    let (mut d, mut src) = (0isize, 0usize);
    for e in edits {
        let s = e.start as usize;
        if d != 0 {
            buf.copy_within(src..s, src.wrapping_add_signed(d));
        }
        put(buf, s.wrapping_add_signed(d), e.text.as_bytes());
        d += e.delta();
        src = e.end as usize;
    }
    if d != 0 {
        buf.copy_within(src..len, src.wrapping_add_signed(d));
    }
}

/// Applies sorted, disjoint `edits` when no segment moves left: back to front, each
/// segment moved, then the edit before it written (which starts at or after its old
/// start, past every unmoved byte).
fn backward(edits: &[Edit], buf: &mut [u8], len: usize, total: isize) {
    let (mut d, mut src_end) = (total, len);
    for e in edits.iter().rev() {
        let end = e.end as usize;
        if d != 0 {
            buf.copy_within(end..src_end, end.wrapping_add_signed(d));
        }
        d -= e.delta();
        put(
            buf,
            (e.start as usize).wrapping_add_signed(d),
            e.text.as_bytes(),
        );
        src_end = e.start as usize;
    }
}

/// Applies sorted, disjoint `edits` whose segments move both ways: three passes.
fn mixed(edits: &[Edit], buf: &mut [u8], len: usize, total: isize) {
    // Unchanged segments between edits move by the sum of the deltas before them.
    // Segments moving left are moved front to back, segments moving right back to
    // front; neither can overwrite a segment that has not moved yet (their targets
    // lie past every unmoved source in the direction of travel).
    let n = edits.len();
    let seg = |i: usize| -> (usize, usize) {
        let s = if i == 0 { 0 } else { edits[i - 1].end as usize };
        let e = if i == n { len } else { edits[i].start as usize };
        (s, e)
    };
    // Segment i moves by the sum of the deltas of edits 0..i (its shift): running sums,
    // front to back for the left moves, back to front (from the total) for the right.
    let mut d = 0isize;
    for i in 0..=n {
        if d < 0 {
            let (s, e) = seg(i);
            buf.copy_within(s..e, s.wrapping_add_signed(d));
        }
        if let Some(e) = edits.get(i) {
            d += e.delta();
        }
    }
    let mut d = total;
    for i in (0..=n).rev() {
        if let Some(e) = edits.get(i) {
            d -= e.delta();
        }
        // `d` is now segment i's shift.
        if d > 0 {
            let (s, e) = seg(i);
            buf.copy_within(s..e, s.wrapping_add_signed(d));
        }
    }
    let mut d = 0isize;
    for e in edits {
        put(
            buf,
            (e.start as usize).wrapping_add_signed(d),
            e.text.as_bytes(),
        );
        d += e.delta();
    }
}

/// Writes `t` (a replacement text: at most [`crate::sip::addr::TEXT_CAP`] bytes) at `at`,
/// with copies of a constant size (two overlapping ones cover each range of lengths)
/// instead of a `memcpy` call per text: the texts are short (addresses, ports, lengths).
#[inline(always)]
fn put(buf: &mut [u8], at: usize, t: &[u8]) {
    let n = t.len();
    let dst = &mut buf[at..at + n];
    /// `dst[i..i + N] = t[i..i + N]`, both with at least `i + N` bytes.
    #[inline(always)]
    fn chunk<const N: usize>(dst: &mut [u8], t: &[u8], i: usize) {
        if let (Some(d), Some(s)) = (
            dst.get_mut(i..).and_then(|d| d.first_chunk_mut::<N>()),
            t.get(i..).and_then(|s| s.first_chunk::<N>()),
        ) {
            *d = *s;
        }
    }
    match n {
        16.. => {
            let mut i = 0;
            while i + 16 < n {
                chunk::<16>(dst, t, i);
                i += 16;
            }
            chunk::<16>(dst, t, n - 16);
        }
        8..16 => {
            chunk::<8>(dst, t, 0);
            chunk::<8>(dst, t, n - 8);
        }
        4..8 => {
            chunk::<4>(dst, t, 0);
            chunk::<4>(dst, t, n - 4);
        }
        2..4 => {
            chunk::<2>(dst, t, 0);
            chunk::<2>(dst, t, n - 2);
        }
        // (A byte loop here was a `memcpy` call.)
        1 => chunk::<1>(dst, t, 0),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Text {
        let mut x = Text::default();
        x.push(s.as_bytes());
        x
    }

    fn run(input: &str, edits: &[(usize, usize, &str)], cap: usize) -> Option<String> {
        let mut buf = vec![0u8; cap];
        buf[..input.len()].copy_from_slice(input.as_bytes());
        let mut e = Edits::new();
        for (s, en, txt) in edits {
            e.push(*s, *en, t(txt), RewrittenField::Via).unwrap();
        }
        let n = e.apply(&mut buf, input.len())?;
        Some(String::from_utf8(buf[..n].to_vec()).unwrap())
    }

    /// Reference: build the output by concatenation.
    fn reference(input: &str, edits: &[(usize, usize, &str)]) -> String {
        let mut sorted = edits.to_vec();
        sorted.sort();
        let mut out = String::new();
        let mut p = 0;
        for (s, e, txt) in sorted {
            out.push_str(&input[p..s]);
            out.push_str(txt);
            p = e;
        }
        out.push_str(&input[p..]);
        out
    }

    #[test]
    fn grow_shrink_and_mixed() {
        let input = "aa 10.0.0.5 bb 192.168.100.100 cc 10.0.0.5 dd";
        let cases: &[&[(usize, usize, &str)]] = &[
            &[(3, 11, "203.0.113.10")],
            &[(15, 30, "1.2.3.4")],
            &[(3, 11, "203.0.113.10"), (15, 30, "1.2.3.4"), (34, 42, "x")],
            &[(34, 42, "a-much-longer-text"), (3, 11, "")],
            &[(0, 0, "pre "), (45, 45, " post")],
        ];
        for c in cases {
            assert_eq!(
                run(input, c, 128).as_deref(),
                Some(reference(input, c).as_str()),
                "{c:?}"
            );
        }
    }

    #[test]
    fn too_big_leaves_buffer_alone() {
        assert_eq!(run("abc", &[(0, 1, "xyz")], 4), None);
        assert_eq!(run("abc", &[(0, 1, "xy")], 4).as_deref(), Some("xybc"));
    }

    #[test]
    fn texts_of_every_length_written_exactly() {
        let text: Vec<u8> = (0..crate::sip::addr::TEXT_CAP as u8)
            .map(|i| b'a' + i % 26)
            .collect();
        for n in 0..=text.len() {
            for at in [0, 1, 7] {
                let mut buf = vec![b'.'; 80];
                put(&mut buf, at, &text[..n]);
                let mut want = vec![b'.'; 80];
                want[at..at + n].copy_from_slice(&text[..n]);
                assert_eq!(buf, want, "{n} bytes at {at}");
            }
        }
    }

    #[test]
    fn an_edit_pushed_in_order_keeps_the_list_sorted() {
        let input = "aa 10.0.0.5 bb 192.168.100.100 cc 10.0.0.5 dd";
        let mut e = Edits::new();
        e.push(3, 11, t("203.0.113.10"), RewrittenField::Via)
            .unwrap();
        e.push(34, 42, t("x"), RewrittenField::Via).unwrap();
        e.push_in_order((15, 30), t("1.2.3.4"), RewrittenField::ContentLength)
            .unwrap();
        e.push_in_order((0, 0), t("pre "), RewrittenField::ContentLength)
            .unwrap();
        e.push_in_order((45, 45), t(" post"), RewrittenField::ContentLength)
            .unwrap();
        let starts: Vec<u32> = e.iter().map(|e| e.start).collect();
        assert_eq!(starts, [0, 3, 15, 34, 45]);
        let mut buf = vec![0u8; 128];
        buf[..input.len()].copy_from_slice(input.as_bytes());
        let n = e.apply(&mut buf, input.len()).unwrap();
        let edits = [
            (0, 0, "pre "),
            (3, 11, "203.0.113.10"),
            (15, 30, "1.2.3.4"),
            (34, 42, "x"),
            (45, 45, " post"),
        ];
        assert_eq!(&buf[..n], reference(input, &edits).as_bytes());
    }

    #[test]
    fn a_reserved_edit_is_filled_in_place_or_taken_out() {
        let input = "aa 10.0.0.5 bb 228 cc 10.0.0.5 dd";
        for fill in [true, false] {
            let mut e = Edits::new();
            e.push(3, 11, t("1.2.3.4"), RewrittenField::Via).unwrap();
            e.push(22, 30, t("203.0.113.10"), RewrittenField::Via)
                .unwrap();
            // Reserved between the two (the second moves up), then an edit after it.
            let slot = e.reserve((15, 18), RewrittenField::ContentLength);
            assert_eq!(slot, Some(1));
            e.push(31, 33, t("x"), RewrittenField::Via).unwrap();
            let mut edits = vec![(3, 11, "1.2.3.4"), (22, 30, "203.0.113.10"), (31, 33, "x")];
            if fill {
                *e.text_mut(1).expect("the reserved edit") = t("1000");
                edits.insert(1, (15, 18, "1000"));
            } else {
                e.remove(1);
            }
            let starts: Vec<u32> = e.iter().map(|e| e.start).collect();
            let want: Vec<u32> = edits.iter().map(|e| e.0 as u32).collect();
            assert_eq!(starts, want);
            let mut buf = vec![0u8; 128];
            buf[..input.len()].copy_from_slice(input.as_bytes());
            let n = e.apply(&mut buf, input.len()).unwrap();
            assert_eq!(&buf[..n], reference(input, &edits).as_bytes());
        }
    }

    #[test]
    fn overlapping_edits_refused() {
        assert_eq!(run("abcdef", &[(0, 3, "x"), (2, 4, "y")], 16), None);
        // Out of order and overlapping; sorted by start, an insertion after a
        // replacement at the same place.
        assert_eq!(
            run("abcdef", &[(4, 5, "z"), (2, 4, "y"), (0, 3, "x")], 16),
            None
        );
        assert_eq!(run("abcdef", &[(1, 3, "x"), (1, 1, "y")], 16), None);
        // Out of order, disjoint: sorted, then applied.
        assert_eq!(
            run("abcdef", &[(4, 5, "z"), (0, 1, "y"), (1, 3, "x")], 16).as_deref(),
            Some("yxdzf")
        );
    }
}
