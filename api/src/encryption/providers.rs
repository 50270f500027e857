//! The providers of an `EncryptionConfiguration` and the transformer they make: values are
//! stored as Kubernetes stores them, `k8s:enc:aesgcm:v1:KEYNAME:` + nonce ‖ sealed (or
//! `secretbox`), or plain (`identity`). The first provider's first key writes; every provider
//! and key reads, chosen by the value's prefix.

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::Aes192;
use aes_gcm::{Aes128Gcm, Aes256Gcm, AesGcm};
use crypto_secretbox::XSalsa20Poly1305;
use rand::Rng;

type Aes192Gcm = AesGcm<Aes192, U12>;

/// AES-GCM nonce length (Kubernetes' `aesgcm` uses the standard 12 bytes).
const GCM_NONCE: usize = 12;
/// XSalsa20-Poly1305 nonce length.
const SECRETBOX_NONCE: usize = 24;

pub(crate) enum Gcm {
    A128(Box<Aes128Gcm>),
    A192(Box<Aes192Gcm>),
    A256(Box<Aes256Gcm>),
}

impl Gcm {
    fn new(secret: &[u8]) -> Option<Gcm> {
        Some(match secret.len() {
            16 => Gcm::A128(Box::new(Aes128Gcm::new_from_slice(secret).ok()?)),
            24 => Gcm::A192(Box::new(Aes192Gcm::new_from_slice(secret).ok()?)),
            32 => Gcm::A256(Box::new(Aes256Gcm::new_from_slice(secret).ok()?)),
            _ => return None,
        })
    }

    fn seal(&self, nonce: &[u8; GCM_NONCE], msg: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        let payload = Payload { msg, aad };
        let nonce = aes_gcm::Nonce::<U12>::from_slice(nonce);
        match self {
            Gcm::A128(c) => c.encrypt(nonce, payload),
            Gcm::A192(c) => c.encrypt(nonce, payload),
            Gcm::A256(c) => c.encrypt(nonce, payload),
        }
        .ok()
    }

    fn open(&self, nonce: &[u8], msg: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        let payload = Payload { msg, aad };
        let nonce = aes_gcm::Nonce::<U12>::from_slice(nonce);
        match self {
            Gcm::A128(c) => c.decrypt(nonce, payload),
            Gcm::A192(c) => c.decrypt(nonce, payload),
            Gcm::A256(c) => c.decrypt(nonce, payload),
        }
        .ok()
    }
}

pub(crate) enum Cipher {
    Gcm(Gcm),
    Secretbox(Box<XSalsa20Poly1305>),
}

/// One named key of a provider.
pub(crate) struct NamedKey {
    name: String,
    cipher: Cipher,
}

/// One provider of a resource entry, in the order of the file.
pub(crate) enum Provider {
    Identity,
    AesGcm(Vec<NamedKey>),
    Secretbox(Vec<NamedKey>),
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Key material never reaches a log.
        let names = |keys: &[NamedKey]| keys.iter().map(|k| k.name.clone()).collect::<Vec<_>>();
        match self {
            Provider::Identity => f.write_str("identity"),
            Provider::AesGcm(keys) => write!(f, "aesgcm{:?}", names(keys)),
            Provider::Secretbox(keys) => write!(f, "secretbox{:?}", names(keys)),
        }
    }
}

impl Provider {
    /// Keys of checked lengths (16, 24 or 32 bytes), in order.
    pub(crate) fn aesgcm(keys: Vec<(String, Vec<u8>)>) -> Provider {
        Provider::AesGcm(
            keys.into_iter()
                .filter_map(|(name, secret)| {
                    Some(NamedKey {
                        name,
                        cipher: Cipher::Gcm(Gcm::new(&secret)?),
                    })
                })
                .collect(),
        )
    }

    /// Keys of checked length (32 bytes), in order.
    pub(crate) fn secretbox(keys: Vec<(String, Vec<u8>)>) -> Provider {
        Provider::Secretbox(
            keys.into_iter()
                .filter_map(|(name, secret)| {
                    Some(NamedKey {
                        name,
                        cipher: Cipher::Secretbox(Box::new(
                            XSalsa20Poly1305::new_from_slice(&secret).ok()?,
                        )),
                    })
                })
                .collect(),
        )
    }

    fn type_name(&self) -> &'static str {
        match self {
            Provider::Identity => "identity",
            Provider::AesGcm(_) => "aesgcm",
            Provider::Secretbox(_) => "secretbox",
        }
    }

    fn keys(&self) -> &[NamedKey] {
        match self {
            Provider::Identity => &[],
            Provider::AesGcm(keys) | Provider::Secretbox(keys) => keys,
        }
    }
}

/// The prefix every encrypted value starts with.
const ENCRYPTED: &[u8] = b"k8s:enc:";

/// A value read back, and whether it was written by anything but the current writer (the
/// first provider's first key): such a value is "stale" and a rewrite re-encrypts it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Opened {
    pub(crate) value: Vec<u8>,
    pub(crate) stale: bool,
}

/// The providers of one resource entry.
#[derive(Debug)]
pub(crate) struct Transformer {
    providers: Vec<Provider>,
}

impl Transformer {
    pub(crate) fn new(providers: Vec<Provider>) -> Transformer {
        Transformer { providers }
    }

    /// Seals `value` stored at `key` with the first provider's first key; the ciphertext is
    /// bound to `key` (a value copied to another key does not open).
    pub(crate) fn seal(&self, key: &str, value: &[u8]) -> Vec<u8> {
        let Some(first) = self.providers.first() else {
            return value.to_vec();
        };
        let Some(named) = first.keys().first() else {
            return value.to_vec();
        };
        let mut out = format!("k8s:enc:{}:v1:{}:", first.type_name(), named.name).into_bytes();
        match &named.cipher {
            Cipher::Gcm(gcm) => {
                let nonce: [u8; GCM_NONCE] = rand::rng().random();
                out.extend_from_slice(&nonce);
                // Sealing only fails for messages past GCM's limit (64 GiB), far beyond a value.
                if let Some(sealed) = gcm.seal(&nonce, value, key.as_bytes()) {
                    out.extend_from_slice(&sealed);
                }
            }
            Cipher::Secretbox(sb) => {
                let nonce: [u8; SECRETBOX_NONCE] = rand::rng().random();
                out.extend_from_slice(&nonce);
                // NaCl's secretbox has no associated data: the key is sealed in front of the
                // value, and checked on open.
                let msg = bound(key, value);
                if let Ok(sealed) = sb.encrypt(nonce.as_slice().into(), msg.as_slice()) {
                    out.extend_from_slice(&sealed);
                }
            }
        }
        out
    }

    /// Opens a value stored at `key` with the provider and key its prefix names; plain values
    /// only through `identity`. The error says what each attempt found.
    pub(crate) fn open(&self, key: &str, value: &[u8]) -> Result<Opened, String> {
        let first_writer = |p: usize, k: usize| p == 0 && k == 0;
        if !value.starts_with(ENCRYPTED) {
            return match self
                .providers
                .iter()
                .position(|p| matches!(p, Provider::Identity))
            {
                Some(p) => Ok(Opened {
                    value: value.to_vec(),
                    stale: p != 0,
                }),
                None => Err(
                    "the value is not encrypted and no identity provider is configured".to_string(),
                ),
            };
        }
        let mut reasons = Vec::new();
        for (p, provider) in self.providers.iter().enumerate() {
            let type_name = provider.type_name();
            let Some(rest) = value
                .strip_prefix(ENCRYPTED)
                .and_then(|v| v.strip_prefix(type_name.as_bytes()))
                .and_then(|v| v.strip_prefix(b":v1:"))
            else {
                continue;
            };
            let Some(colon) = rest.iter().position(|b| *b == b':') else {
                reasons.push(format!("{type_name}: the value names no key"));
                continue;
            };
            let name = String::from_utf8_lossy(&rest[..colon]);
            let data = &rest[colon + 1..];
            let Some((k, named)) = provider
                .keys()
                .iter()
                .enumerate()
                .find(|(_, k)| k.name == name)
            else {
                reasons.push(format!("{type_name}: no key named {name:?} is configured"));
                continue;
            };
            match open_with(&named.cipher, key, data) {
                Ok(value) => {
                    return Ok(Opened {
                        value,
                        stale: !first_writer(p, k),
                    });
                }
                Err(e) => reasons.push(format!("{type_name} key {name:?}: {e}")),
            }
        }
        if reasons.is_empty() {
            let shown: String = String::from_utf8_lossy(value)
                .chars()
                .take_while(|c| *c != '\0')
                .take(40)
                .collect();
            let prefix = shown.splitn(4, ':').take(3).collect::<Vec<_>>().join(":");
            reasons.push(format!(
                "no configured provider reads values of prefix {prefix:?}"
            ));
        }
        Err(reasons.join("; "))
    }
}

fn bound(key: &str, value: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(4 + key.len() + value.len());
    msg.extend_from_slice(&(key.len() as u32).to_be_bytes());
    msg.extend_from_slice(key.as_bytes());
    msg.extend_from_slice(value);
    msg
}

fn open_with(cipher: &Cipher, key: &str, data: &[u8]) -> Result<Vec<u8>, &'static str> {
    const FAILED: &str = "cipher: message authentication failed";
    match cipher {
        Cipher::Gcm(gcm) => {
            if data.len() < GCM_NONCE {
                return Err("the data is too short");
            }
            let (nonce, sealed) = data.split_at(GCM_NONCE);
            gcm.open(nonce, sealed, key.as_bytes()).ok_or(FAILED)
        }
        Cipher::Secretbox(sb) => {
            if data.len() < SECRETBOX_NONCE {
                return Err("the data is too short");
            }
            let (nonce, sealed) = data.split_at(SECRETBOX_NONCE);
            let msg = sb.decrypt(nonce.into(), sealed).map_err(|_| FAILED)?;
            let expected = bound(key, &[]);
            msg.strip_prefix(expected.as_slice())
                .map(<[u8]>::to_vec)
                .ok_or("the value was sealed for another key")
        }
    }
}
