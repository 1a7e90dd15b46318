//! Borrowed lists inside frames (the rooms of a hello, the events of a batch).
//!
//! A list must decode without allocating, so on the binary wire it is a postcard byte string
//! holding the elements back to back (`varint(total_len) elem elem ...`). Decoding borrows that
//! byte string and parses elements lazily while iterating; a frame's validation parses every
//! element once, so a [`Seq`] inside a frame returned by this crate's decoders always yields all
//! of its elements. Encoding computes each element's size first and writes them in place, so
//! building a list needs no scratch buffer either. In the JSON form a list is a plain JSON array.

use core::fmt;
use core::marker::PhantomData;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A list of `T` in a frame: either elements the caller holds (for encoding), or the encoded
/// elements of a received frame (parsed as they are iterated).
pub struct Seq<'a, T> {
    repr: Repr<'a, T>,
}

enum Repr<'a, T> {
    Items(&'a [T]),
    Encoded(&'a [u8]),
    /// Elements a room log wrote once for all subscribers, checked when they were appended, and
    /// counted by the session that copied them: postcard back to back (iterated, written by the
    /// binary form) and, when the log keeps them, the JSON texts separated by commas (written as
    /// they are by the JSON codec, see [`Seq::json_text`]). Not parsed again to be validated or
    /// counted: the session sends a batch of them per socket write. Only the server (`alloc`)
    /// builds one.
    #[cfg_attr(not(feature = "alloc"), allow(dead_code))]
    Log {
        encoded: &'a [u8],
        count: usize,
        #[cfg(feature = "json")]
        json: Option<&'a [u8]>,
    },
    #[cfg(feature = "json")]
    Json(alloc::vec::Vec<&'a serde_json::value::RawValue>),
}

impl<T> Clone for Repr<'_, T> {
    fn clone(&self) -> Self {
        match self {
            Repr::Items(items) => Repr::Items(items),
            Repr::Encoded(bytes) => Repr::Encoded(bytes),
            Repr::Log {
                encoded,
                count,
                #[cfg(feature = "json")]
                json,
            } => Repr::Log {
                encoded,
                count: *count,
                #[cfg(feature = "json")]
                json: *json,
            },
            #[cfg(feature = "json")]
            Repr::Json(raws) => Repr::Json(raws.clone()),
        }
    }
}

impl<T> Clone for Seq<'_, T> {
    fn clone(&self) -> Self {
        Seq {
            repr: self.repr.clone(),
        }
    }
}

impl<'a, T> Seq<'a, T> {
    /// A list of the given elements, for encoding.
    pub const fn from_slice(items: &'a [T]) -> Self {
        Seq {
            repr: Repr::Items(items),
        }
    }

    /// An empty list.
    pub const fn empty() -> Self {
        Seq::from_slice(&[])
    }

    /// A list from elements already encoded back to back with postcard, as the server's batcher
    /// writes them once for all subscribers. The bytes are trusted: iteration stops at the first
    /// element that does not parse, and encoding a frame validates every element.
    pub const fn from_encoded(bytes: &'a [u8]) -> Self {
        Seq {
            repr: Repr::Encoded(bytes),
        }
    }

    /// `count` elements copied from a room log: `encoded` as for [`Seq::from_encoded`], and
    /// `json` (feature `json`), the same elements as JSON texts separated by commas. Only the
    /// server session builds one, from forms a room log wrote and checked at append, because
    /// neither is checked again (the JSON codec writes `json` out as it is).
    #[cfg_attr(not(feature = "alloc"), allow(dead_code))]
    pub(crate) const fn from_log(
        encoded: &'a [u8],
        count: usize,
        #[cfg(feature = "json")] json: Option<&'a [u8]>,
    ) -> Self {
        Seq {
            repr: Repr::Log {
                encoded,
                count,
                #[cfg(feature = "json")]
                json,
            },
        }
    }

    /// The JSON texts of the elements, comma-separated, when the list holds them ready.
    #[cfg(feature = "json")]
    pub(crate) fn json_text(&self) -> Option<&'a [u8]> {
        match self.repr {
            Repr::Log { json, .. } => json,
            _ => None,
        }
    }

    /// The postcard encodings of the elements, back to back, when the list holds them ready.
    fn encoded(&self) -> Option<&'a [u8]> {
        match self.repr {
            Repr::Encoded(bytes) => Some(bytes),
            Repr::Log { encoded, .. } => Some(encoded),
            _ => None,
        }
    }
}

impl<'a, T: Deserialize<'a> + Clone> Seq<'a, T> {
    /// The elements, in order.
    pub fn iter(&self) -> Iter<'_, 'a, T> {
        Iter {
            seq: self,
            pos: 0,
            rest: self.encoded().unwrap_or(&[]),
            _t: PhantomData,
        }
    }

    /// Parses every element, handing each to `f`; stops at the first element that does not
    /// parse or that `f` rejects. Returns the number of elements. Elements copied from a room
    /// log were checked when they were appended and are only counted.
    pub(crate) fn check<E>(
        &self,
        malformed: E,
        mut f: impl FnMut(&T) -> Result<(), E>,
    ) -> Result<usize, E> {
        let mut n = 0;
        match &self.repr {
            Repr::Log { count, .. } => n = *count,
            Repr::Items(items) => {
                for item in *items {
                    f(item)?;
                    n += 1;
                }
            }
            #[cfg(feature = "json")]
            Repr::Json(raws) => {
                for raw in raws {
                    let Ok(item) = serde_json::from_str::<T>(raw.get()) else {
                        return Err(malformed);
                    };
                    f(&item)?;
                    n += 1;
                }
            }
            _ => {
                let mut rest = self.encoded().unwrap_or(&[]);
                while !rest.is_empty() {
                    let Ok((item, tail)) = postcard::take_from_bytes::<T>(rest) else {
                        return Err(malformed);
                    };
                    f(&item)?;
                    rest = tail;
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    /// The number of elements (parses received lists).
    pub fn len(&self) -> usize {
        match self.repr {
            Repr::Log { count, .. } => count,
            _ => self.iter().count(),
        }
    }

    /// Whether the list has no elements.
    pub fn is_empty(&self) -> bool {
        match self.repr {
            Repr::Log { count, .. } => count == 0,
            _ => self.iter().next().is_none(),
        }
    }
}

/// Iterator over a [`Seq`]; see [`Seq::iter`].
pub struct Iter<'s, 'a, T> {
    seq: &'s Seq<'a, T>,
    pos: usize,
    rest: &'a [u8],
    _t: PhantomData<T>,
}

impl<'a, T: Deserialize<'a> + Clone> Iterator for Iter<'_, 'a, T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        match &self.seq.repr {
            Repr::Items(items) => {
                let item = items.get(self.pos)?.clone();
                self.pos += 1;
                Some(item)
            }
            #[cfg(feature = "json")]
            Repr::Json(raws) => {
                let raw: &'a serde_json::value::RawValue = raws.get(self.pos)?;
                self.pos += 1;
                serde_json::from_str::<T>(raw.get()).ok()
            }
            _ => {
                if self.rest.is_empty() {
                    return None;
                }
                // Frames from this crate's decoders were checked element by element, so this
                // only fails on a list that bypassed them; iteration then ends there.
                let (item, tail) = postcard::take_from_bytes::<T>(self.rest).ok()?;
                self.rest = tail;
                Some(item)
            }
        }
    }
}

impl<'a, T: Deserialize<'a> + Clone + PartialEq> PartialEq for Seq<'a, T> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl<'a, T: Deserialize<'a> + Clone + fmt::Debug> fmt::Debug for Seq<'a, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a, T: Serialize + Deserialize<'a> + Clone> Serialize for Seq<'a, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error as _, SerializeSeq as _, SerializeTuple as _};
        if s.is_human_readable() {
            let mut seq = s.serialize_seq(None)?;
            for item in self.iter() {
                seq.serialize_element(&item)?;
            }
            return seq.end();
        }
        if let Some(bytes) = self.encoded() {
            return s.serialize_bytes(bytes);
        }
        // Postcard writes a byte string as varint(len) followed by the bytes, a u64 as the same
        // varint, and a tuple with no prefix; so this writes exactly the byte string of the
        // encoded elements, without a scratch buffer.
        let mut total = 0u64;
        for item in self.iter() {
            let size = postcard::experimental::serialized_size(&item)
                .map_err(|_| S::Error::custom("list element cannot be encoded"))?;
            total += size as u64;
        }
        let count = self.iter().count();
        let mut tuple = s.serialize_tuple(count + 1)?;
        tuple.serialize_element(&total)?;
        for item in self.iter() {
            tuple.serialize_element(&item)?;
        }
        tuple.end()
    }
}

impl<'de: 'a, 'a, T> Deserialize<'de> for Seq<'a, T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[cfg(feature = "json")]
        if d.is_human_readable() {
            let raws = alloc::vec::Vec::<&'de serde_json::value::RawValue>::deserialize(d)?;
            return Ok(Seq {
                repr: Repr::Json(raws),
            });
        }
        <&'de [u8]>::deserialize(d).map(Seq::from_encoded)
    }
}
