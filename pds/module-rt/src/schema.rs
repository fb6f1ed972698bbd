//! Derived state schemas: a module declares the records its state is made
//! of as types, and its schema history as typed conversions; the export
//! and import code, their validation and the descriptor's schema lists are
//! derived from that, so no module writes a transfer offset by hand.
//!
//! - A **record** is a struct declared with [`state_record!`](crate::state_record). Its encoding
//!   is every field's fixed part in field order (a number; a byte string's
//!   length, as the length type it names), then every byte string's bytes
//!   in field order. Numbers are little-endian.
//! - A **schema** ([`Schema`]) is an id, an optional tag and a record type.
//!   A state in it is `tag, count: u32, count × record`, and nothing after.
//! - A module's state ([`RecordState`]) is seen as records of its newest
//!   schema; its older schemas ([`Older`]) convert their records up (an
//!   import) and down (an export for a rollback).
//!
//! Every byte of an import comes from the other slot and is checked: each
//! length against its bounds, the count against the bytes there, and the
//! end. A failed import leaves the state empty.
use interfaces::abi::{status, ModuleDescriptor};

/// An export's destination. Runs out with `NO_SPACE`.
pub struct Encoder<'o> {
    out: &'o mut [u8],
    at: usize,
}

impl<'o> Encoder<'o> {
    pub fn new(out: &'o mut [u8]) -> Self {
        Encoder { out, at: 0 }
    }

    pub fn put(&mut self, bytes: &[u8]) -> Result<(), i32> {
        let end = self.at.checked_add(bytes.len()).ok_or(status::NO_SPACE)?;
        self.out.get_mut(self.at..end).ok_or(status::NO_SPACE)?.copy_from_slice(bytes);
        self.at = end;
        Ok(())
    }

    /// The bytes written so far.
    pub fn len(&self) -> usize {
        self.at
    }

    pub fn is_empty(&self) -> bool {
        self.at == 0
    }

    /// Room for a count that is known only once the records are written.
    fn reserve_count(&mut self) -> Result<usize, i32> {
        let at = self.at;
        self.put(&0u32.to_le_bytes())?;
        Ok(at)
    }

    fn fill_count(&mut self, at: usize, count: u32) {
        self.out[at..at + 4].copy_from_slice(&count.to_le_bytes());
    }
}

/// An import's source: the other slot's bytes. Runs out with `BAD_STATE`.
pub struct Decoder<'a> {
    data: &'a [u8],
}

impl<'a> Decoder<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Decoder { data }
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], i32> {
        if n > self.data.len() {
            return Err(status::BAD_STATE);
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Ok(head)
    }

    pub fn take_array<const N: usize>(&mut self) -> Result<[u8; N], i32> {
        self.take(N)?.try_into().map_err(|_| status::BAD_STATE)
    }

    pub fn remaining(&self) -> usize {
        self.data.len()
    }
}

/// One field of a record: a fixed part, then (for byte strings) a tail.
pub trait Field<'a>: Sized {
    /// What the fixed part decodes to before the tail is read.
    type Head;
    fn put_head(&self, e: &mut Encoder<'_>) -> Result<(), i32>;
    fn put_tail(&self, _e: &mut Encoder<'_>) -> Result<(), i32> {
        Ok(())
    }
    fn get_head(d: &mut Decoder<'a>) -> Result<Self::Head, i32>;
    fn get_tail(head: Self::Head, d: &mut Decoder<'a>) -> Result<Self, i32>;
}

macro_rules! number_fields {
    ($($t:ty),*) => {$(
        impl<'a> Field<'a> for $t {
            type Head = $t;
            fn put_head(&self, e: &mut Encoder<'_>) -> Result<(), i32> {
                e.put(&self.to_le_bytes())
            }
            fn get_head(d: &mut Decoder<'a>) -> Result<$t, i32> {
                Ok(<$t>::from_le_bytes(d.take_array()?))
            }
            fn get_tail(head: $t, _d: &mut Decoder<'a>) -> Result<$t, i32> {
                Ok(head)
            }
        }
    )*};
}
number_fields!(u8, u16, u32, u64);

/// The type a byte string's length travels as.
pub trait Length: Copy {
    const MAX: usize;
    fn put_len(n: usize, e: &mut Encoder<'_>) -> Result<(), i32>;
    fn get_len(d: &mut Decoder<'_>) -> Result<usize, i32>;
}

macro_rules! lengths {
    ($($t:ty),*) => {$(
        impl Length for $t {
            const MAX: usize = <$t>::MAX as usize;
            fn put_len(n: usize, e: &mut Encoder<'_>) -> Result<(), i32> {
                // Never truncates: `Bytes` holds at most `MAX_LEN <= Self::MAX`.
                e.put(&<$t>::try_from(n).map_err(|_| status::NO_SPACE)?.to_le_bytes())
            }
            fn get_len(d: &mut Decoder<'_>) -> Result<usize, i32> {
                usize::try_from(<$t>::from_le_bytes(d.take_array()?)).map_err(|_| status::BAD_STATE)
            }
        }
    )*};
}
lengths!(u8, u16, u32);

/// A byte string of `MIN..=MAX` bytes whose length travels as `L`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bytes<'a, L, const MIN: usize, const MAX: usize> {
    bytes: &'a [u8],
    _len: core::marker::PhantomData<L>,
}

impl<'a, L: Length, const MIN: usize, const MAX: usize> Bytes<'a, L, MIN, MAX> {
    /// A compile-time check that every allowed length fits `L`: a length
    /// is never truncated on its way out.
    const FITS: () = assert!(MAX <= L::MAX && MIN <= MAX, "the length type cannot hold every allowed length");

    /// `BAD_STATE` when `bytes` is out of bounds.
    pub fn new(bytes: &'a [u8]) -> Result<Self, i32> {
        #[allow(clippy::let_unit_value)]
        let () = Self::FITS;
        if bytes.len() < MIN || bytes.len() > MAX {
            return Err(status::BAD_STATE);
        }
        Ok(Bytes { bytes, _len: core::marker::PhantomData })
    }

    pub fn get(&self) -> &'a [u8] {
        self.bytes
    }

    /// The same bytes with another length type or bounds.
    pub fn convert<M: Length, const MIN2: usize, const MAX2: usize>(self) -> Result<Bytes<'a, M, MIN2, MAX2>, i32> {
        Bytes::new(self.bytes)
    }
}

impl<'a, L: Length, const MIN: usize, const MAX: usize> Field<'a> for Bytes<'a, L, MIN, MAX> {
    type Head = usize;
    fn put_head(&self, e: &mut Encoder<'_>) -> Result<(), i32> {
        L::put_len(self.bytes.len(), e)
    }
    fn put_tail(&self, e: &mut Encoder<'_>) -> Result<(), i32> {
        e.put(self.bytes)
    }
    fn get_head(d: &mut Decoder<'a>) -> Result<usize, i32> {
        let n = L::get_len(d)?;
        if n < MIN || n > MAX {
            return Err(status::BAD_STATE);
        }
        Ok(n)
    }
    fn get_tail(n: usize, d: &mut Decoder<'a>) -> Result<Self, i32> {
        Bytes::new(d.take(n)?)
    }
}

/// A record of a state schema (declare one with [`state_record!`](crate::state_record)).
pub trait Record<'a>: Sized {
    fn encode(&self, e: &mut Encoder<'_>) -> Result<(), i32>;
    fn decode(d: &mut Decoder<'a>) -> Result<Self, i32>;
}

/// Declares a record struct and derives its encoding: every field's fixed
/// part in field order, then every field's tail in field order.
#[macro_export]
macro_rules! state_record {
    ($(#[$m:meta])* $vis:vis struct $name:ident<$lt:lifetime> {
        $($(#[$fm:meta])* $fvis:vis $field:ident : $ty:ty),* $(,)?
    }) => {
        $(#[$m])* $vis struct $name<$lt> { $($(#[$fm])* $fvis $field: $ty),* }
        impl<$lt> $crate::schema::Record<$lt> for $name<$lt> {
            $crate::state_record!(@body $name, $lt, $($field: $ty),*);
        }
    };
    ($(#[$m:meta])* $vis:vis struct $name:ident {
        $($(#[$fm:meta])* $fvis:vis $field:ident : $ty:ty),* $(,)?
    }) => {
        $(#[$m])* $vis struct $name { $($(#[$fm])* $fvis $field: $ty),* }
        impl<'a> $crate::schema::Record<'a> for $name {
            $crate::state_record!(@body $name, 'a, $($field: $ty),*);
        }
    };
    (@body $name:ident, $lt:lifetime, $($field:ident : $ty:ty),*) => {
        fn encode(&self, e: &mut $crate::schema::Encoder<'_>) -> Result<(), i32> {
            $($crate::schema::Field::put_head(&self.$field, e)?;)*
            $($crate::schema::Field::put_tail(&self.$field, e)?;)*
            Ok(())
        }
        fn decode(d: &mut $crate::schema::Decoder<$lt>) -> Result<Self, i32> {
            $(let $field = <$ty as $crate::schema::Field<$lt>>::get_head(d)?;)*
            $(let $field = <$ty as $crate::schema::Field<$lt>>::get_tail($field, d)?;)*
            Ok($name { $($field),* })
        }
    };
}

/// A state schema: `TAG`, a record count, the records.
pub trait Schema: 'static {
    const ID: u32;
    /// The bytes a state in this schema starts with.
    const TAG: &'static [u8] = &[];
    /// The most records a state may hold.
    const MAX_RECORDS: u32 = u32::MAX;
    type Record<'a>: Record<'a>;
}

/// An older schema of a module's state, converted to and from its newest
/// (implemented for every `'a`: `impl<'a> Older<'a, New> for Old`).
pub trait Older<'a, Newest: Schema>: Schema {
    /// For an import from an older version.
    fn upgrade(r: Self::Record<'a>) -> Result<Newest::Record<'a>, i32>;
    /// For an export to an older version (a rollback).
    fn downgrade(r: Newest::Record<'a>) -> Result<Self::Record<'a>, i32>;
}

/// The older schemas a module reads and writes: `()`, `(A,)`, `(A, B)`.
pub trait Olders<Newest: Schema> {
    const IDS: &'static [u32];
    /// `None` when no older schema is `schema`.
    fn export<S: RecordState<Newest = Newest>>(state: &S, schema: u32, e: &mut Encoder<'_>) -> Option<Result<(), i32>>;
    fn import<S: RecordState<Newest = Newest>>(state: &mut S, schema: u32, data: &[u8]) -> Option<Result<(), i32>>;
}

impl<N: Schema> Olders<N> for () {
    const IDS: &'static [u32] = &[];
    fn export<S: RecordState<Newest = N>>(_: &S, _: u32, _: &mut Encoder<'_>) -> Option<Result<(), i32>> {
        None
    }
    fn import<S: RecordState<Newest = N>>(_: &mut S, _: u32, _: &[u8]) -> Option<Result<(), i32>> {
        None
    }
}

macro_rules! olders {
    ($($t:ident),+) => {
        impl<N: Schema, $($t: for<'a> Older<'a, N>),+> Olders<N> for ($($t,)+) {
            const IDS: &'static [u32] = &[$($t::ID),+];
            fn export<S: RecordState<Newest = N>>(state: &S, schema: u32, e: &mut Encoder<'_>) -> Option<Result<(), i32>> {
                $(if schema == $t::ID {
                    return Some(write_state::<$t>(e, |f| state.each(&mut |r| f($t::downgrade(r)?))));
                })+
                None
            }
            fn import<S: RecordState<Newest = N>>(state: &mut S, schema: u32, data: &[u8]) -> Option<Result<(), i32>> {
                $(if schema == $t::ID {
                    return Some(read_state::<$t>(data, |r| state.insert($t::upgrade(r)?)));
                })+
                None
            }
        }
    };
}
olders!(A);
olders!(A, B);
olders!(A, B, C);

/// A module's state seen as records of its newest schema.
pub trait RecordState {
    type Newest: Schema;
    type Olders: Olders<Self::Newest>;
    fn clear(&mut self);
    fn insert(&mut self, r: <Self::Newest as Schema>::Record<'_>) -> Result<(), i32>;
    /// Calls `f` with every record, stopping at its first error. (`f` takes
    /// records of any lifetime, which a type alias could not say.)
    #[allow(clippy::type_complexity)]
    fn each(&self, f: &mut dyn FnMut(<Self::Newest as Schema>::Record<'_>) -> Result<(), i32>) -> Result<(), i32>;
}

fn write_state<Sc: Schema>(
    e: &mut Encoder<'_>,
    records: impl FnOnce(&mut dyn FnMut(Sc::Record<'_>) -> Result<(), i32>) -> Result<(), i32>,
) -> Result<(), i32> {
    e.put(Sc::TAG)?;
    let at = e.reserve_count()?;
    let mut count = 0u32;
    records(&mut |r| {
        count = count.checked_add(1).filter(|&c| c <= Sc::MAX_RECORDS).ok_or(status::NO_SPACE)?;
        r.encode(e)
    })?;
    e.fill_count(at, count);
    Ok(())
}

fn read_state<'a, Sc: Schema>(
    data: &'a [u8],
    mut insert: impl FnMut(Sc::Record<'a>) -> Result<(), i32>,
) -> Result<(), i32> {
    let mut d = Decoder::new(data);
    if d.take(Sc::TAG.len())? != Sc::TAG {
        return Err(status::BAD_STATE);
    }
    let count = u32::from_le_bytes(d.take_array()?);
    if count > Sc::MAX_RECORDS {
        return Err(status::BAD_STATE);
    }
    for _ in 0..count {
        insert(Sc::Record::decode(&mut d)?)?;
    }
    if d.remaining() != 0 {
        return Err(status::BAD_STATE);
    }
    Ok(())
}

/// The descriptor of a module whose state is `S`: its newest schema, and
/// every older one both imported and exported.
pub const fn descriptor<S: RecordState>(service: &str, version: u32) -> ModuleDescriptor {
    let mut d = ModuleDescriptor::new(service, version, S::Newest::ID);
    let older = <S::Olders as Olders<S::Newest>>::IDS;
    let mut i = 0;
    while i < older.len() {
        d = d.imports(older[i]).exports(older[i]);
        i += 1;
    }
    d
}

/// `Module::export_state` for a state of records.
pub fn export<S: RecordState>(state: &S, schema: u32, out: &mut [u8]) -> Result<usize, i32> {
    let mut e = Encoder::new(out);
    if schema == S::Newest::ID {
        write_state::<S::Newest>(&mut e, |f| state.each(f))?;
    } else {
        <S::Olders as Olders<S::Newest>>::export(state, schema, &mut e).ok_or(status::UNSUPPORTED_SCHEMA)??;
    }
    Ok(e.len())
}

/// `Module::import_state` for a state of records: replaces the state, or
/// leaves it empty and says why.
pub fn import<S: RecordState>(state: &mut S, schema: u32, data: &[u8]) -> Result<(), i32> {
    state.clear();
    let r = if schema == S::Newest::ID {
        read_state::<S::Newest>(data, |r| state.insert(r))
    } else {
        <S::Olders as Olders<S::Newest>>::import(state, schema, data).unwrap_or(Err(status::UNSUPPORTED_SCHEMA))
    };
    r.inspect_err(|_| state.clear())
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::state_record! {
        struct Pair<'a> {
            id: u32,
            name: Bytes<'a, u8, 1, 4>,
        }
    }

    struct One;
    impl Schema for One {
        const ID: u32 = 7;
        const TAG: &'static [u8] = b"T";
        const MAX_RECORDS: u32 = 1;
        type Record<'a> = Pair<'a>;
    }

    /// A state of at most one record, held as its id and name.
    #[derive(Default)]
    struct Held(Option<(u32, [u8; 4], usize)>);
    impl RecordState for Held {
        type Newest = One;
        type Olders = ();
        fn clear(&mut self) {
            self.0 = None;
        }
        fn insert(&mut self, r: Pair<'_>) -> Result<(), i32> {
            let mut name = [0; 4];
            name[..r.name.get().len()].copy_from_slice(r.name.get());
            self.0 = Some((r.id, name, r.name.get().len()));
            Ok(())
        }
        fn each(&self, f: &mut dyn FnMut(Pair<'_>) -> Result<(), i32>) -> Result<(), i32> {
            match &self.0 {
                Some((id, name, n)) => f(Pair { id: *id, name: Bytes::new(&name[..*n])? }),
                None => Ok(()),
            }
        }
    }

    #[test]
    fn fixed_parts_first_then_tails_after_tag_and_count() {
        let held = Held(Some((0x0102_0304, *b"ab\0\0", 2)));
        let mut out = [0u8; 16];
        let n = export(&held, 7, &mut out).unwrap();
        assert_eq!(&out[..n], b"T\x01\0\0\0\x04\x03\x02\x01\x02ab");
        let mut back = Held::default();
        import(&mut back, 7, &out[..n]).unwrap();
        assert_eq!(back.0, held.0);
        const D: ModuleDescriptor = descriptor::<Held>("t", 3);
        assert!(D.can_import(7) && !D.can_import(1) && D.can_export(7));
    }

    #[test]
    fn every_bound_is_checked_on_import() {
        let mut h = Held(Some((1, *b"x\0\0\0", 1)));
        for bad in [
            &b"T\x02\0\0\0\x01\0\0\0\x01x\x01\0\0\0\x01x"[..], // two records, one allowed
            b"T\x01\0\0\0\x01\0\0\0\x05xxxxx",                 // a name too long
            b"T\x01\0\0\0\x01\0\0\0\x00",                      // a name too short
            b"T\x01\0\0\0\x01\0\0\0\x02x",                     // bytes missing
            b"U\x01\0\0\0\x01\0\0\0\x01x",                     // another tag
            b"T\x01\0\0\0\x01\0\0\0\x01xx",                    // bytes left over
        ] {
            assert_eq!(import(&mut h, 7, bad), Err(status::BAD_STATE), "{bad:?}");
            assert!(h.0.is_none(), "a refused import leaves the state empty");
        }
        assert_eq!(import(&mut h, 8, b""), Err(status::UNSUPPORTED_SCHEMA));
        assert_eq!(Bytes::<u8, 1, 4>::new(b"toolong").map(|_| ()), Err(status::BAD_STATE));
        let mut small = [0u8; 6];
        assert_eq!(export(&Held(Some((1, *b"abcd", 4))), 7, &mut small), Err(status::NO_SPACE));
    }
}
