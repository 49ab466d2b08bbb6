//! Serde for secrets that are read straight into locked memory: a sealed record's
//! keys and PIN hashes are decoded into a [`Secret`] or [`SecretVec`] byte by byte
//! (or from the borrowed input in one copy), never into an ordinary array or
//! vector first.
//!
//! The encodings are those of `[u8; N]` (a tuple of `N` bytes) and, in postcard,
//! of `Vec<u8>` (a varint length, then the bytes), so the stored formats are the
//! ones the plain types gave.

use core::fmt;

use ihsm_crypto::{ExposeSecret, ExposeSecretMut, Secret, SecretVec};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeTuple, Serializer};

/// A [`Secret<N>`] encoded as `[u8; N]`.
pub(crate) mod array {
    use super::*;

    pub(crate) fn serialize<S: Serializer, const N: usize>(
        v: &Secret<N>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(N)?;
        for b in v.expose_secret() {
            t.serialize_element(b)?;
        }
        t.end()
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<Secret<N>, D::Error> {
        struct V<const N: usize>;
        impl<'de, const N: usize> Visitor<'de> for V<N> {
            type Value = Secret<N>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{N} secret bytes")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Secret<N>, A::Error> {
                let mut out =
                    Secret::<N>::zeroed().map_err(|_| de::Error::custom("no locked memory"))?;
                for (i, slot) in out.expose_secret_mut().iter_mut().enumerate() {
                    *slot = seq
                        .next_element()?
                        .ok_or_else(|| de::Error::invalid_length(i, &self))?;
                }
                Ok(out)
            }
        }
        d.deserialize_tuple(N, V::<N>)
    }
}

/// A [`SecretVec`] encoded as bytes (in postcard, as a `Vec<u8>` is).
pub(crate) mod bytes {
    use super::*;

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SecretVec, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = SecretVec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("secret bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<SecretVec, E> {
                SecretVec::from_slice(v).map_err(|_| E::custom("no locked memory"))
            }
        }
        d.deserialize_bytes(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize)]
    struct Plain {
        a: [u8; 32],
        b: Vec<u8>,
    }

    #[derive(Serialize, Deserialize)]
    struct Locked {
        #[serde(with = "array")]
        a: Secret<32>,
        #[serde(serialize_with = "ser_vec", deserialize_with = "bytes::deserialize")]
        b: SecretVec,
    }

    fn ser_vec<S: Serializer>(v: &SecretVec, s: S) -> Result<S::Ok, S::Error> {
        v.expose_secret().serialize(s)
    }

    #[test]
    fn the_locked_encodings_are_the_plain_ones() {
        let plain = Plain {
            a: [0xa5; 32],
            b: (0..200).collect(),
        };
        let bytes = postcard::to_allocvec(&plain).unwrap();
        let locked: Locked = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(locked.a.expose_secret(), &plain.a);
        assert_eq!(locked.b.expose_secret(), &plain.b[..]);
        assert_eq!(postcard::to_allocvec(&locked).unwrap(), bytes);
        // Too short is an error, not a shorter secret.
        assert!(postcard::from_bytes::<Locked>(&bytes[..20]).is_err());
    }
}
