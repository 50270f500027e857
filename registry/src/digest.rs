//! Content digests (`sha256:…`, `sha512:…`): parsing, validation and incremental hashing.

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

/// Errors from parsing a digest string.
#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    /// The string is not `ALGORITHM:HEX`.
    #[error("invalid digest {0:?}: expected ALGORITHM:HEX")]
    Malformed(String),
    /// The algorithm is not sha256 or sha512.
    #[error("unsupported digest algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    /// The hex part has the wrong length or characters.
    #[error("invalid digest {0:?}: wrong length or not lowercase hex")]
    BadHex(String),
}

/// A digest algorithm the registry accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// SHA-256, the default.
    Sha256,
    /// SHA-512.
    Sha512,
}

impl Algorithm {
    /// The algorithm's name as written in a digest.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// A validated content digest such as `sha256:0123…`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    /// The SHA-256 digest of `data`.
    pub fn sha256_of(data: &[u8]) -> Digest {
        Digest {
            algorithm: Algorithm::Sha256,
            hex: hex::encode(sha2::Sha256::digest(data)),
        }
    }

    /// The digest of `data` with this digest's algorithm.
    pub fn of_same_kind(&self, data: &[u8]) -> Digest {
        let mut d = Digester::new(self.algorithm);
        d.update(data);
        d.finish()
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The lowercase hex part.
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.as_str(), self.hex)
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (algo, hex) = s
            .split_once(':')
            .ok_or_else(|| DigestError::Malformed(s.to_string()))?;
        let algorithm = match algo {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            other => return Err(DigestError::UnsupportedAlgorithm(other.to_string())),
        };
        if hex.len() != algorithm.hex_len()
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(DigestError::BadHex(s.to_string()));
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_string(),
        })
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An incremental hasher producing a [`Digest`].
#[derive(Clone)]
pub enum Digester {
    /// SHA-256 state.
    Sha256(sha2::Sha256),
    /// SHA-512 state.
    Sha512(sha2::Sha512),
}

impl Digester {
    /// A fresh hasher for `algorithm`.
    pub fn new(algorithm: Algorithm) -> Digester {
        match algorithm {
            Algorithm::Sha256 => Digester::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Digester::Sha512(sha2::Sha512::new()),
        }
    }

    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Digester::Sha256(h) => h.update(data),
            Digester::Sha512(h) => h.update(data),
        }
    }

    /// The digest of everything fed so far.
    pub fn finish(self) -> Digest {
        match self {
            Digester::Sha256(h) => Digest {
                algorithm: Algorithm::Sha256,
                hex: hex::encode(h.finalize()),
            },
            Digester::Sha512(h) => Digest {
                algorithm: Algorithm::Sha512,
                hex: hex::encode(h.finalize()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let d = Digest::sha256_of(b"hello");
        let s = d.to_string();
        assert_eq!(s.parse::<Digest>().unwrap(), d);
        assert!("sha256:abc".parse::<Digest>().is_err());
        assert!("md5:00".parse::<Digest>().is_err());
        assert!(s.to_uppercase().parse::<Digest>().is_err());
        assert!("nocolon".parse::<Digest>().is_err());
    }

    #[test]
    fn digester_matches_one_shot() {
        let mut h = Digester::new(Algorithm::Sha256);
        h.update(b"hel");
        h.update(b"lo");
        assert_eq!(h.finish(), Digest::sha256_of(b"hello"));
        let d512: Digest = format!("sha512:{}", "0".repeat(128)).parse().unwrap();
        assert_eq!(d512.of_same_kind(b"x").algorithm(), Algorithm::Sha512);
    }
}
