//! Exactly-once application of upstream publishes: a per-client window of applied publish ids.
//!
//! A client numbers its publishes 1, 2, 3, ... with a counter it keeps across reconnects. Its
//! window of `W` publishes is a span of ids: it sends id `y` only while `y` is below its lowest
//! unanswered id plus `W` (answered: acknowledged, or refused for good). After a reconnect, or
//! when told to wait, it resends the unanswered ones, in any order. [`Dedup`] remembers which ids
//! were applied, so a retry is acknowledged again (with the position it got the first time)
//! instead of being applied twice.
//!
//! # Driving it
//! Nothing here reads a clock; `now` comes from the caller.
//! 1. On a publish, [`Dedup::check`] the `(client_id, id)` pair.
//! 2. [`Verdict::New`]: hand the publish to the application. Once it is applied at a position,
//!    [`Dedup::record`] it, then acknowledge; if it is refused for good,
//!    [`Dedup::record_refused`] it, then answer with the error (a refusal the client retries,
//!    such as a rate limit, records nothing). [`Verdict::Duplicate`]: acknowledge again with the
//!    stored position, apply nothing. [`Verdict::Stale`]: apply nothing, answer with an error.
//!    [`Verdict::OutOfWindow`]: refuse for now.
//! 3. Optionally, [`Dedup::forget_idle`] now and then frees the records of clients long gone.
//!
//! # What is kept per client
//! With `W` the window:
//! - a watermark: every id up to it is settled (recorded, or known to be answered);
//! - the highest id recorded;
//! - `2W` slots holding `(id, position)` of recorded ids (applied, or refused for good), id `y`
//!   in slot `y % 2W`. The slots double as the bitmap of recorded ids above the watermark: `y`
//!   above the watermark was recorded exactly when its slot holds `y` (ids above the watermark
//!   span at most `2W` values, so they never share a slot).
//!
//! A retry whose slot still holds it is [`Verdict::Duplicate`] with its original position
//! ([`Verdict::Stale`] if it was refused). An id at or below the watermark whose slot moved on is
//! [`Verdict::Stale`]: settled, position unknown. A well-behaved client never retries one: its
//! unanswered ids are always among the `W` highest recorded, whose slots are kept.
//!
//! Two rules keep the watermark moving:
//! - it advances over ids recorded right above it;
//! - it is at least `highest - W`: a well-behaved client only sent its highest id once every id
//!   `W` below it was acknowledged, so those are settled even if this [`Dedup`] never saw them
//!   (they were applied before a restart, or before the client was evicted).
//!
//! Ids above `watermark + W` are [`Verdict::OutOfWindow`]: the client sent beyond its window.
//! One exception, for clients seen for the first time (below). Since an id that is never
//! recorded holds the watermark back, final refusals must be recorded too
//! ([`Dedup::record_refused`]), or the client is refused `W` ids later.
//!
//! # Clients seen for the first time
//! A client is unknown until it is first recorded; [`Dedup::check`] calls anything it
//! sends [`Verdict::New`]. After a server restart, or after it was evicted, it arrives with its
//! counter wherever it is, and some of its ids may have been applied and acknowledged by the
//! previous incarnation, out of order: such ids are never sent again and leave holes under the
//! watermark until the `highest - W` rule settles them. When the first id recorded is `x`:
//! - ids up to `x - W` are settled at once ([`Verdict::Stale`]); ids above are new until recorded;
//! - until the watermark passes `x + W - 1`, ids up to `min(highest, x + W - 1) + W` are accepted
//!   even when that is beyond `watermark + W`. Without this, a hole left by the previous
//!   incarnation could pin the watermark while the client, already acknowledged past it, waits
//!   for room in its window: refused forever. For a client whose ids arrive in order the limit
//!   stays exactly `watermark + W`.
//!
//! # Capacity and the limit of the guarantee
//! At most [`DedupConfig::clients`] clients are tracked; a new one evicts the least recently
//! used: the one whose last [`Dedup::record`] or [`Dedup::record_refused`] is the oldest (exact
//! LRU, kept in an intrusive doubly linked list over the client records). **An evicted client that then retries a publish
//! that was applied but not acknowledged gets it applied twice**: the guarantee holds for the
//! `clients` most recently active clients, and within one [`Dedup`] (a server restart forgets
//! everything, unless the application keeps its own record). The same holds for clients removed
//! by [`Dedup::forget_idle`].
//!
//! # Cost
//! All memory is allocated in [`Dedup::new`]: per client a 56-byte record, a 16-byte index entry
//! and `2W` slots of 24 bytes: about 3.1 KiB per client, 3.1 MiB with the defaults. Finding a client is a binary
//! search in a sorted array of client ids (`O(log n)`, and no hashing, so chosen client ids
//! cannot slow it down); admitting or evicting a client shifts that array (a `memmove` of at most
//! 16 bytes per client). [`Dedup::check`] is `O(log n)`; [`Dedup::record`] adds the watermark's
//! advance, amortised `O(1)` and at most `2W` steps. Nothing allocates after construction.

use alloc::vec;
use alloc::vec::Vec;
use core::time::Duration;

use crate::frame::Position;
use crate::time::Instant;

/// Sizes of a [`Dedup`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupConfig {
    /// Most clients tracked; default 1024. A value of 0 is taken as 1.
    pub clients: usize,
    /// The clients' publish window: the span of ids a client may have unanswered, from its lowest
    /// unanswered id; default 64. A value of 0 is taken as 1.
    pub window: u32,
}

impl DedupConfig {
    /// The defaults: 1024 clients, a window of 64.
    pub const fn new() -> Self {
        DedupConfig {
            clients: 1024,
            window: 64,
        }
    }

    /// Sets [`DedupConfig::clients`].
    pub const fn clients(mut self, clients: usize) -> Self {
        self.clients = clients;
        self
    }

    /// Sets [`DedupConfig::window`].
    pub const fn window(mut self, window: u32) -> Self {
        self.window = window;
        self
    }
}

impl Default for DedupConfig {
    fn default() -> Self {
        DedupConfig::new()
    }
}

/// What [`Dedup::check`] says about a publish.
///
/// Not `#[non_exhaustive]`: the caller must decide what to answer in every case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not applied yet (or the client is unknown): apply it, then [`Dedup::record`] it.
    New,
    /// Already applied at this position: acknowledge again, apply nothing.
    Duplicate(Position),
    /// Refused for good ([`Dedup::record_refused`]), or settled long ago (applied, or
    /// acknowledged before this [`Dedup`] knew the client) so that its position is no longer
    /// known, or id 0, which no client uses. Apply nothing; a well-behaved client only sends such
    /// an id again when the answer to a refusal was lost.
    Stale,
    /// The id is beyond the client's window: it has more publishes in flight than allowed.
    /// Refuse it; it may be sent again once earlier ones are acknowledged.
    OutOfWindow,
}

const NIL: usize = usize::MAX;

/// One tracked client.
#[derive(Debug, Clone, Copy)]
struct Client {
    id: u64,
    /// Every id up to here is settled.
    watermark: u64,
    /// The highest id recorded (or settled, before the first record).
    highest: u64,
    /// The first id recorded.
    first: u64,
    last_seen: Instant,
    /// LRU list neighbours (towards more recent, towards less recent); `next` also links the
    /// free list.
    prev: usize,
    next: usize,
}

const VACANT: Client = Client {
    id: 0,
    watermark: 0,
    highest: 0,
    first: 0,
    last_seen: Instant::ZERO,
    prev: NIL,
    next: NIL,
};

/// A recorded publish: its id (0 for none) and where it was applied.
#[derive(Debug, Clone, Copy)]
struct Applied {
    id: u64,
    position: Position,
}

const EMPTY: Applied = Applied {
    id: 0,
    position: Position::new(0, 0),
};

/// The position stored for a refused publish: no event has this offset (offsets stop at
/// 2^53 - 1).
const REFUSED: Position = Position::new(u32::MAX, u64::MAX);

/// The per-client windows of applied publish ids; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct Dedup {
    config: DedupConfig,
    /// `2 * window`: slots per client.
    span: u64,
    /// `(client id, index in clients)`, sorted by client id.
    index: Vec<(u64, usize)>,
    clients: Vec<Client>,
    /// `slots[c * span + id % span]`.
    slots: Vec<Applied>,
    /// Most and least recently used tracked clients.
    newest: usize,
    oldest: usize,
    /// Head of the free list of client records.
    free: usize,
}

impl Dedup {
    /// An empty window; allocates all its storage now, sized by `config`.
    ///
    /// # Panics
    /// Only if that storage cannot be allocated (as `Vec::with_capacity` does): a config asking
    /// for more memory than the machine has.
    pub fn new(config: DedupConfig) -> Self {
        let config = DedupConfig {
            clients: config.clients.max(1),
            window: config.window.max(1),
        };
        let span = 2 * u64::from(config.window);
        let n = config.clients;
        let mut clients = vec![VACANT; n];
        for (i, c) in clients.iter_mut().enumerate() {
            c.next = if i + 1 < n { i + 1 } else { NIL };
        }
        let span_usize = usize::try_from(span).unwrap_or(usize::MAX);
        Dedup {
            config,
            span,
            index: Vec::with_capacity(n),
            clients,
            slots: vec![EMPTY; n.saturating_mul(span_usize)],
            newest: NIL,
            oldest: NIL,
            free: 0,
        }
    }

    /// The config in force (both sizes at least 1).
    pub fn config(&self) -> &DedupConfig {
        &self.config
    }

    /// Clients tracked.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether no client is tracked.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Whether publish `id` of `client_id` was applied; see [`Verdict`]. Changes nothing.
    pub fn check(&self, client_id: u64, id: u64) -> Verdict {
        match self.find(client_id) {
            Some(c) => self.verdict(c, id),
            None if id == 0 => Verdict::Stale,
            None => Verdict::New,
        }
    }

    /// Records that publish `id` of `client_id` was applied at `position`, and marks the client
    /// as just used. Call it after the application applied a publish [`Dedup::check`] called
    /// [`Verdict::New`]; for an id it would not call new, only the client's use is noted (a
    /// duplicate keeps its first position, and an id out of the window is not recorded).
    ///
    /// An unknown client is admitted, evicting the least recently used one when all are taken.
    pub fn record(&mut self, now: Instant, client_id: u64, id: u64, position: Position) {
        self.settle(now, client_id, id, position);
    }

    /// Records that publish `id` of `client_id` was refused for good (the client drops it and
    /// will not send it again), so that the window can move past it; it is
    /// [`Verdict::Stale`] from then on. Otherwise like [`Dedup::record`].
    ///
    /// Call it for every final refusal of a publish [`Dedup::check`] called new: an id that is
    /// never recorded holds the watermark back, and `window` ids later the client's publishes
    /// become [`Verdict::OutOfWindow`] (until the client has sent an id `window` past it, which
    /// its own window forbids). Do not call it for refusals the client retries (rate limits).
    pub fn record_refused(&mut self, now: Instant, client_id: u64, id: u64) {
        self.settle(now, client_id, id, REFUSED);
    }

    fn settle(&mut self, now: Instant, client_id: u64, id: u64, position: Position) {
        let c = match self.find(client_id) {
            Some(c) => {
                self.unlink(c);
                c
            }
            None => self.admit(client_id, id),
        };
        self.push_newest(c);
        let verdict = self.verdict(c, id);
        let Some(mut client) = self.clients.get(c).copied() else {
            return;
        };
        client.last_seen = now;
        if verdict == Verdict::New {
            if let Some(slot) = self.slot_mut(c, id) {
                *slot = Applied { id, position };
            }
            client.highest = client.highest.max(id);
            let settled = client.highest.saturating_sub(u64::from(self.config.window));
            client.watermark = client.watermark.max(settled);
            while client.watermark < u64::MAX && self.holds(c, client.watermark + 1) {
                client.watermark += 1;
            }
        }
        if let Some(slot) = self.clients.get_mut(c) {
            *slot = client;
        }
    }

    /// Forgets the clients whose last [`Dedup::record`] is `idle` old or older at `now`, least
    /// recently used first, and returns how many. Their retries are then treated as new (see the
    /// module docs on the limit of the guarantee).
    pub fn forget_idle(&mut self, now: Instant, idle: Duration) -> usize {
        let mut forgotten = 0;
        while let Some(client) = self.clients.get(self.oldest).copied() {
            if now.saturating_duration_since(client.last_seen) < idle {
                break;
            }
            let c = self.oldest;
            self.release(c, client.id);
            forgotten += 1;
        }
        forgotten
    }

    fn find(&self, client_id: u64) -> Option<usize> {
        let i = self
            .index
            .binary_search_by_key(&client_id, |&(id, _)| id)
            .ok()?;
        self.index.get(i).map(|&(_, c)| c)
    }

    fn verdict(&self, c: usize, id: u64) -> Verdict {
        let Some(client) = self.clients.get(c) else {
            return Verdict::New;
        };
        if id == 0 {
            return Verdict::Stale;
        }
        let recorded = self.slot(c, id).filter(|s| s.id == id).map(|s| {
            if s.position == REFUSED {
                Verdict::Stale
            } else {
                Verdict::Duplicate(s.position)
            }
        });
        if id <= client.watermark {
            return recorded.unwrap_or(Verdict::Stale);
        }
        let window = u64::from(self.config.window);
        let fresh_end = client.first.saturating_add(window - 1);
        let limit = client
            .watermark
            .max(client.highest.min(fresh_end))
            .saturating_add(window);
        if id > limit {
            return Verdict::OutOfWindow;
        }
        recorded.unwrap_or(Verdict::New)
    }

    /// Takes a record for a client first seen with publish `id`, and indexes it.
    fn admit(&mut self, client_id: u64, id: u64) -> usize {
        if self.free == NIL {
            let victim = self.oldest;
            if let Some(client) = self.clients.get(victim).copied() {
                self.release(victim, client.id);
            }
        }
        let c = self.free;
        let Some(client) = self.clients.get_mut(c) else {
            return NIL;
        };
        self.free = client.next;
        let settled = id.saturating_sub(u64::from(self.config.window));
        *client = Client {
            id: client_id,
            watermark: settled,
            highest: settled,
            first: id,
            ..VACANT
        };
        let (start, end) = self.slot_range(c);
        if let Some(slots) = self.slots.get_mut(start..end) {
            slots.fill(EMPTY);
        }
        if let Err(i) = self.index.binary_search_by_key(&client_id, |&(id, _)| id) {
            // Within the reserved capacity: a record was free, so fewer clients are indexed.
            self.index.insert(i, (client_id, c));
        }
        c
    }

    /// Unlinks and unindexes the record `c` of `client_id` and puts it on the free list.
    fn release(&mut self, c: usize, client_id: u64) {
        self.unlink(c);
        if let Ok(i) = self.index.binary_search_by_key(&client_id, |&(id, _)| id) {
            self.index.remove(i);
        }
        if let Some(client) = self.clients.get_mut(c) {
            client.next = self.free;
            self.free = c;
        }
    }

    /// Takes `c` out of the LRU list.
    fn unlink(&mut self, c: usize) {
        let Some(&Client { prev, next, .. }) = self.clients.get(c) else {
            return;
        };
        match self.clients.get_mut(prev) {
            Some(p) => p.next = next,
            None => self.newest = next,
        }
        match self.clients.get_mut(next) {
            Some(n) => n.prev = prev,
            None => self.oldest = prev,
        }
        if let Some(client) = self.clients.get_mut(c) {
            client.prev = NIL;
            client.next = NIL;
        }
    }

    /// Puts `c` (not in the LRU list) at its most recent end.
    fn push_newest(&mut self, c: usize) {
        let old = self.newest;
        let Some(client) = self.clients.get_mut(c) else {
            return;
        };
        client.prev = NIL;
        client.next = old;
        match self.clients.get_mut(old) {
            Some(n) => n.prev = c,
            None => self.oldest = c,
        }
        self.newest = c;
    }

    fn slot_range(&self, c: usize) -> (usize, usize) {
        let span = usize::try_from(self.span).unwrap_or(usize::MAX);
        let start = c.saturating_mul(span);
        (start, start.saturating_add(span))
    }

    fn slot_index(&self, c: usize, id: u64) -> usize {
        let within = usize::try_from(id % self.span.max(1)).unwrap_or(usize::MAX);
        self.slot_range(c).0.saturating_add(within)
    }

    fn slot(&self, c: usize, id: u64) -> Option<&Applied> {
        self.slots.get(self.slot_index(c, id))
    }

    fn slot_mut(&mut self, c: usize, id: u64) -> Option<&mut Applied> {
        let i = self.slot_index(c, id);
        self.slots.get_mut(i)
    }

    /// Whether client `c`'s slot for `id` holds `id`.
    fn holds(&self, c: usize, id: u64) -> bool {
        self.slot(c, id).is_some_and(|s| s.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(offset: u64) -> Position {
        Position::new(1, offset)
    }

    #[test]
    fn new_then_duplicate_then_stale() {
        let mut d = Dedup::new(DedupConfig::new().window(4));
        assert_eq!(d.check(7, 1), Verdict::New);
        for id in 1..=20 {
            assert_eq!(d.check(7, id), Verdict::New);
            d.record(Instant::ZERO, 7, id, pos(100 + id));
            assert_eq!(d.check(7, id), Verdict::Duplicate(pos(100 + id)));
        }
        assert_eq!(d.len(), 1);
        // The 8 highest ids keep their positions; older ones are stale.
        for id in 13..=20 {
            assert_eq!(d.check(7, id), Verdict::Duplicate(pos(100 + id)));
        }
        assert_eq!(d.check(7, 12), Verdict::Stale);
        assert_eq!(d.check(7, 1), Verdict::Stale);
        assert_eq!(d.check(7, 0), Verdict::Stale);
        assert_eq!(d.check(7, 24), Verdict::New);
        assert_eq!(d.check(7, 25), Verdict::OutOfWindow);
        assert_eq!(d.check(8, 1), Verdict::New);
    }

    #[test]
    fn out_of_order_within_the_window() {
        let mut d = Dedup::new(DedupConfig::new().window(4));
        d.record(Instant::ZERO, 1, 1, pos(1));
        // Ids 2 and 3 were refused and are retried after 4 and 5.
        d.record(Instant::ZERO, 1, 4, pos(4));
        d.record(Instant::ZERO, 1, 5, pos(5));
        // Within its first window, a client first seen at 1 gets up to highest + W (the holes at
        // 2 and 3 could have been acknowledged by a previous incarnation).
        assert_eq!(d.check(1, 8), Verdict::New);
        assert_eq!(d.check(1, 9), Verdict::OutOfWindow);
        assert_eq!(d.check(1, 2), Verdict::New);
        d.record(Instant::ZERO, 1, 3, pos(3));
        d.record(Instant::ZERO, 1, 2, pos(2));
        for id in 1..=5 {
            assert_eq!(d.check(1, id), Verdict::Duplicate(pos(id)));
        }
        assert_eq!(d.check(1, 9), Verdict::New);
        assert_eq!(d.check(1, 10), Verdict::OutOfWindow);
        // Recording a duplicate keeps its first position; out of the window records nothing.
        d.record(Instant::ZERO, 1, 3, pos(99));
        assert_eq!(d.check(1, 3), Verdict::Duplicate(pos(3)));
        d.record(Instant::ZERO, 1, 10, pos(10));
        assert_eq!(d.check(1, 10), Verdict::OutOfWindow);
    }

    #[test]
    fn a_client_first_seen_mid_stream() {
        let mut d = Dedup::new(DedupConfig::new().window(4));
        d.record(Instant::ZERO, 1, 1000, pos(1000));
        assert_eq!(d.check(1, 1000), Verdict::Duplicate(pos(1000)));
        // Its in-flight ids may be 997..=1003.
        for id in [997, 998, 999, 1001, 1002, 1003, 1004] {
            assert_eq!(d.check(1, id), Verdict::New, "{id}");
        }
        assert_eq!(d.check(1, 996), Verdict::Stale);
        assert_eq!(d.check(1, 1005), Verdict::OutOfWindow);
        for id in 997..=1003 {
            d.record(Instant::ZERO, 1, id, pos(id));
        }
        for id in 997..=1003 {
            assert_eq!(d.check(1, id), Verdict::Duplicate(pos(id)));
        }
        assert_eq!(d.check(1, 1007), Verdict::New);
        assert_eq!(d.check(1, 1008), Verdict::OutOfWindow);
    }

    #[test]
    fn holes_left_by_a_previous_incarnation_do_not_block() {
        // Before a restart, the client's ids 7, 8, 9 and 11 were applied and acknowledged; 10
        // was refused. After it, it retries 10, then sends 12..=15 (4 in flight).
        let mut d = Dedup::new(DedupConfig::new().window(4));
        d.record(Instant::ZERO, 1, 10, pos(10));
        for id in 12..=15 {
            assert_eq!(d.check(1, id), Verdict::New, "{id}");
            d.record(Instant::ZERO, 1, id, pos(id));
        }
        // 15 was sent, so everything up to 11 is acknowledged: the holes are settled.
        assert_eq!(d.check(1, 11), Verdict::Stale);
        assert_eq!(d.check(1, 9), Verdict::Stale);
        assert_eq!(d.check(1, 10), Verdict::Duplicate(pos(10)));
        assert_eq!(d.check(1, 19), Verdict::New);
        assert_eq!(d.check(1, 20), Verdict::OutOfWindow);
    }

    #[test]
    fn refusals_move_the_window() {
        let mut d = Dedup::new(DedupConfig::new().window(4));
        d.record(Instant::ZERO, 1, 1, pos(1));
        d.record_refused(Instant::ZERO, 1, 2);
        assert_eq!(d.check(1, 2), Verdict::Stale);
        for id in 3..=6 {
            d.record(Instant::ZERO, 1, id, pos(id));
        }
        assert_eq!(d.check(1, 10), Verdict::New);
        assert_eq!(d.check(1, 11), Verdict::OutOfWindow);
        assert_eq!(d.check(1, 2), Verdict::Stale);
        // Recording over a refusal changes nothing.
        d.record(Instant::ZERO, 1, 2, pos(2));
        assert_eq!(d.check(1, 2), Verdict::Stale);

        // A refusal that is not recorded holds the window back.
        let mut d = Dedup::new(DedupConfig::new().window(4));
        for id in (1..=10).chain(12..=14) {
            d.record(Instant::ZERO, 1, id, pos(id));
        }
        assert_eq!(d.check(1, 11), Verdict::New);
        assert_eq!(d.check(1, 15), Verdict::OutOfWindow);
    }

    #[test]
    fn least_recently_used_client_is_evicted() {
        let mut d = Dedup::new(DedupConfig::new().clients(2).window(8));
        d.record(Instant::ZERO, 10, 1, pos(1));
        d.record(Instant::ZERO, 20, 1, pos(2));
        d.record(Instant::ZERO, 10, 2, pos(3));
        d.record(Instant::ZERO, 30, 1, pos(4)); // evicts 20
        assert_eq!(d.len(), 2);
        assert_eq!(d.check(20, 1), Verdict::New);
        assert_eq!(d.check(10, 1), Verdict::Duplicate(pos(1)));
        assert_eq!(d.check(10, 2), Verdict::Duplicate(pos(3)));
        assert_eq!(d.check(30, 1), Verdict::Duplicate(pos(4)));
        d.record(Instant::ZERO, 20, 1, pos(5)); // evicts 10
        assert_eq!(d.check(10, 1), Verdict::New);
        assert_eq!(d.check(20, 1), Verdict::Duplicate(pos(5)));
        // A re-admitted record starts clean.
        d.record(Instant::ZERO, 10, 3, pos(6)); // evicts 30
        assert_eq!(d.check(10, 3), Verdict::Duplicate(pos(6)));
        assert_eq!(d.check(10, 1), Verdict::New);
        assert_eq!(d.check(30, 1), Verdict::New);
    }

    #[test]
    fn idle_clients_are_forgotten() {
        let mut d = Dedup::new(DedupConfig::new().clients(3));
        d.record(Instant::from_millis(0), 1, 1, pos(1));
        d.record(Instant::from_millis(10), 2, 1, pos(2));
        d.record(Instant::from_millis(20), 3, 1, pos(3));
        d.record(Instant::from_millis(30), 1, 2, pos(4));
        assert_eq!(
            d.forget_idle(Instant::from_millis(40), Duration::from_millis(25)),
            1
        );
        assert_eq!(d.check(2, 1), Verdict::New);
        assert_eq!(d.len(), 2);
        assert_eq!(
            d.forget_idle(Instant::from_millis(40), Duration::from_millis(5)),
            2
        );
        assert!(d.is_empty());
        assert_eq!(d.forget_idle(Instant::from_millis(40), Duration::ZERO), 0);
        for client in 1..=5 {
            d.record(Instant::from_millis(50), client, 1, pos(client));
        }
        assert_eq!(d.len(), 3);
        for client in 3..=5 {
            assert_eq!(d.check(client, 1), Verdict::Duplicate(pos(client)));
        }
    }

    #[test]
    fn zero_sizes_are_taken_as_one() {
        let mut d = Dedup::new(DedupConfig::new().clients(0).window(0));
        assert_eq!(*d.config(), DedupConfig::new().clients(1).window(1));
        d.record(Instant::ZERO, 1, 1, pos(1));
        assert_eq!(d.check(1, 1), Verdict::Duplicate(pos(1)));
        assert_eq!(d.check(1, 2), Verdict::New);
        assert_eq!(d.check(1, 3), Verdict::OutOfWindow);
        d.record(Instant::ZERO, u64::MAX, u64::MAX, pos(2));
        assert_eq!(d.check(u64::MAX, u64::MAX), Verdict::Duplicate(pos(2)));
        assert_eq!(d.check(1, 1), Verdict::New);
    }
}
