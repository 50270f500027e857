//! ServiceAccount JWTs: the claims Kubernetes puts in them, signing with an ES256 (ECDSA P-256)
//! key and verifying against the public keys, each known by Kubernetes' key id (the URL-safe
//! base64 of the SHA-256 of its DER SubjectPublicKeyInfo).

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use rustls::pki_types::pem::{PemObject, SectionKind};
use serde::{Deserialize, Serialize};

/// The DER SubjectPublicKeyInfo of a P-256 key, up to its 65-byte uncompressed point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// How far `exp` and `nbf` may be off, as Kubernetes' `jwt.DefaultLeeway`.
pub const LEEWAY_SECONDS: u64 = 60;

/// A ServiceAccount token's claims, as Kubernetes writes them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// `system:serviceaccount:NS:NAME`.
    pub sub: String,
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaims,
}

/// The private `kubernetes.io` claim: the ServiceAccount and the object the token is bound to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaims {
    pub namespace: String,
    pub serviceaccount: ObjectRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<ObjectRef>,
}

/// An object a token names: its name and uid.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    pub name: String,
    #[serde(default)]
    pub uid: String,
}

/// A P-256 public key a token may be signed with.
#[derive(Clone)]
pub struct PublicKey {
    pub kid: String,
    /// The uncompressed point: `0x04 || X || Y`.
    point: Vec<u8>,
}

impl PublicKey {
    fn from_point(point: &[u8]) -> Result<Self, String> {
        if point.len() != 65 || point[0] != 0x04 {
            return Err("not an uncompressed P-256 public key".into());
        }
        let mut spki = P256_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(point);
        let digest = ring::digest::digest(&ring::digest::SHA256, &spki);
        Ok(PublicKey {
            kid: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref()),
            point: point.to_vec(),
        })
    }

    fn from_spki(der: &[u8]) -> Result<Self, String> {
        match der.strip_prefix(&P256_SPKI_PREFIX[..]) {
            Some(point) => Self::from_point(point),
            None => Err("only ECDSA P-256 public keys are supported".into()),
        }
    }

    /// Every key in a PEM file: `PUBLIC KEY` blocks and PKCS#8 `PRIVATE KEY` blocks (whose
    /// public half is used), as `--service-account-key-file` takes them.
    pub fn all_from_pem(pem: &str) -> Result<Vec<Self>, String> {
        let mut keys = Vec::new();
        for section in <(SectionKind, Vec<u8>) as PemObject>::pem_slice_iter(pem.as_bytes()) {
            let (kind, der) = section.map_err(|e| format!("not a PEM file: {e}"))?;
            match kind {
                SectionKind::PublicKey => keys.push(Self::from_spki(&der)?),
                SectionKind::PrivateKey => keys.push(Signer::from_pkcs8(&der)?.public),
                SectionKind::EcPrivateKey => return Err(sec1_unsupported()),
                _ => {}
            }
        }
        if keys.is_empty() {
            return Err("no PUBLIC KEY or PRIVATE KEY block".into());
        }
        Ok(keys)
    }

    fn decoding_key(&self) -> DecodingKey {
        DecodingKey::from_ec_der(&self.point)
    }

    /// The key as a JSON Web Key, as kube-apiserver's `/openid/v1/jwks` lists it.
    pub fn jwk(&self) -> serde_json::Value {
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        serde_json::json!({
            "use": "sig",
            "kty": "EC",
            "kid": self.kid,
            "crv": "P-256",
            "alg": "ES256",
            "x": b64(&self.point[1..33]),
            "y": b64(&self.point[33..65]),
        })
    }
}

fn sec1_unsupported() -> String {
    "EC PRIVATE KEY (SEC1) keys are not supported; convert with `openssl pkcs8 -topk8 -nocrypt`"
        .into()
}

/// The key tokens are signed with.
pub struct Signer {
    key: EncodingKey,
    pub public: PublicKey,
}

impl Signer {
    /// A new P-256 key, as a PKCS#8 PEM.
    pub fn generate_pem() -> Result<String, String> {
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map(|k| k.serialize_pem())
            .map_err(|e| e.to_string())
    }

    /// The key of a PKCS#8 `PRIVATE KEY` PEM.
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        for section in <(SectionKind, Vec<u8>) as PemObject>::pem_slice_iter(pem.as_bytes()) {
            let (kind, der) = section.map_err(|e| format!("not a PEM file: {e}"))?;
            match kind {
                SectionKind::PrivateKey => return Self::from_pkcs8(&der),
                SectionKind::EcPrivateKey => return Err(sec1_unsupported()),
                _ => {}
            }
        }
        Err("no PRIVATE KEY block".into())
    }

    fn from_pkcs8(der: &[u8]) -> Result<Self, String> {
        let pair = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            der,
            &ring::rand::SystemRandom::new(),
        )
        .map_err(|e| format!("only ECDSA P-256 (PKCS#8) signing keys are supported: {e}"))?;
        Ok(Signer {
            key: EncodingKey::from_ec_der(der),
            public: PublicKey::from_point(pair.public_key().as_ref())?,
        })
    }

    /// The signed token.
    pub fn sign(&self, claims: &Claims) -> Result<String, String> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.public.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key).map_err(|e| e.to_string())
    }
}

/// Whether `token` looks like a JWT (three dot-separated parts, the first a JSON header): what
/// the authenticator checks before any cryptography, so other bearer tokens pass by cheaply.
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3 && jsonwebtoken::decode_header(token).is_ok()
}

/// The claims of `token` when one of `keys` signed it (ES256), `iss` is `issuer` and `exp`/`nbf`
/// hold with the leeway; the audience is left to the caller.
pub fn verify(token: &str, issuer: &str, keys: &[PublicKey]) -> Result<Claims, String> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| format!("invalid token: {e}"))?;
    if header.alg != Algorithm::ES256 {
        return Err(format!("unsupported signing algorithm {:?}", header.alg));
    }
    let mut validation = Validation::new(Algorithm::ES256);
    validation.leeway = LEEWAY_SECONDS;
    validation.validate_nbf = true;
    validation.validate_aud = false;
    validation.set_issuer(&[issuer]);
    validation.set_required_spec_claims(&["exp", "iss", "sub"]);
    let candidates = keys
        .iter()
        .filter(|k| header.kid.as_deref().is_none_or(|kid| kid == k.kid));
    let mut last = "no key matches the token's key id".to_string();
    for key in candidates {
        match jsonwebtoken::decode::<Claims>(token, &key.decoding_key(), &validation) {
            Ok(data) => return Ok(data.claims),
            Err(e) => {
                use jsonwebtoken::errors::ErrorKind;
                match e.kind() {
                    ErrorKind::InvalidSignature => last = "invalid signature".into(),
                    ErrorKind::ExpiredSignature => return Err("token has expired".into()),
                    ErrorKind::ImmatureSignature => {
                        return Err("token is not valid yet".into());
                    }
                    ErrorKind::InvalidIssuer => return Err("invalid issuer".into()),
                    _ => return Err(format!("invalid token: {e}")),
                }
            }
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp_from_now: i64) -> Claims {
        let now = jiff::Timestamp::now().as_second();
        Claims {
            iss: "https://issuer".into(),
            sub: "system:serviceaccount:ns:sa".into(),
            aud: vec!["a".into()],
            exp: now + exp_from_now,
            iat: now,
            nbf: now,
            jti: "j".into(),
            kubernetes: KubernetesClaims {
                namespace: "ns".into(),
                serviceaccount: ObjectRef {
                    name: "sa".into(),
                    uid: "u".into(),
                },
                ..KubernetesClaims::default()
            },
        }
    }

    #[test]
    fn a_signed_token_verifies_with_its_key_only() {
        let signer = Signer::from_pem(&Signer::generate_pem().unwrap()).unwrap();
        let other = Signer::from_pem(&Signer::generate_pem().unwrap()).unwrap();
        let token = signer.sign(&claims(600)).unwrap();
        assert!(looks_like_jwt(&token));
        assert_eq!(
            verify(
                &token,
                "https://issuer",
                std::slice::from_ref(&signer.public)
            )
            .unwrap(),
            claims(600)
        );
        assert_eq!(
            verify(
                &token,
                "https://other",
                std::slice::from_ref(&signer.public)
            )
            .unwrap_err(),
            "invalid issuer"
        );
        // Another key, known under the same id, does not verify it.
        let mut impostor = other.public.clone();
        impostor.kid = signer.public.kid.clone();
        assert_eq!(
            verify(&token, "https://issuer", &[impostor]).unwrap_err(),
            "invalid signature"
        );
        let expired = signer.sign(&claims(-3600)).unwrap();
        assert_eq!(
            verify(
                &expired,
                "https://issuer",
                std::slice::from_ref(&signer.public)
            )
            .unwrap_err(),
            "token has expired"
        );
        assert!(!looks_like_jwt("abc"));
    }

    #[test]
    fn public_keys_come_from_public_and_private_pem_blocks() {
        let pem = Signer::generate_pem().unwrap();
        let signer = Signer::from_pem(&pem).unwrap();
        let pair = rcgen::KeyPair::from_pem(&pem).unwrap();
        let public_pem = pair.public_key_pem();
        let keys = PublicKey::all_from_pem(&format!("{public_pem}{pem}")).unwrap();
        assert_eq!(keys.len(), 2);
        assert!(keys.iter().all(|k| k.kid == signer.public.kid));
        let jwk = keys[0].jwk();
        assert_eq!(jwk["kty"], "EC");
        assert_eq!(jwk["x"].as_str().unwrap().len(), 43);
        assert!(PublicKey::all_from_pem("nothing").is_err());
    }
}
