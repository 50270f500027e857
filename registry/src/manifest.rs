//! Manifest media types and a lenient reader for the fields the registry must check.
//!
//! The server stores manifests byte for byte; it only needs their references (config, layers,
//! child manifests, subject) to check that referenced content exists, to index referrers and to
//! mark blobs live during garbage collection. A small serde view does that for OCI and Docker
//! schema 2 alike; oci-spec's strict types would reject Docker manifests and artifacts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Every manifest media type the registry stores.
pub const MANIFEST_MEDIA_TYPES: [&str; 4] = [
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
];

/// Errors from reading a manifest.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not JSON, or a field has the wrong shape.
    #[error("manifest is not valid json: {0}")]
    Json(#[from] serde_json::Error),
    /// The schema version is not 2.
    #[error("unsupported manifest schema version {0}")]
    SchemaVersion(u64),
    /// The media type is not one the registry stores.
    #[error("unsupported manifest media type {0:?}")]
    MediaType(String),
    /// The body's mediaType contradicts the Content-Type header.
    #[error("manifest mediaType {body:?} does not match content type {header:?}")]
    MediaTypeMismatch {
        /// From the body.
        body: String,
        /// From the header.
        header: String,
    },
    /// A required field is missing.
    #[error("manifest is missing {0}")]
    Missing(&'static str),
    /// A descriptor's digest is malformed.
    #[error("descriptor digest is invalid: {0}")]
    Digest(#[from] crate::digest::DigestError),
}

/// A content descriptor, as it appears inside manifests and in the referrers index.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    /// Digest of the referenced content.
    pub digest: String,
    /// Size in bytes.
    pub size: i64,
    /// Foreign URLs (non-distributable layers are not stored by the registry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    /// Artifact type (referrers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Platform (index entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<u64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    annotations: Option<BTreeMap<String, String>>,
}

/// The parts of a manifest the registry checks.
#[derive(Debug)]
pub struct ManifestView {
    /// The effective media type.
    pub media_type: String,
    /// Digests of blobs this manifest needs (config and layers; empty for an index).
    pub blobs: Vec<(Digest, i64)>,
    /// Digests of child manifests (index or list).
    pub children: Vec<Digest>,
    /// The subject, if this manifest refers to another.
    pub subject: Option<Digest>,
    /// artifactType, or the config media type for image manifests (referrers API rule).
    pub artifact_type: Option<String>,
    /// Top-level annotations.
    pub annotations: Option<BTreeMap<String, String>>,
    /// The config descriptor (image manifests).
    pub config: Option<Descriptor>,
    /// Layer descriptors (image manifests), including foreign ones.
    pub layers: Vec<Descriptor>,
    /// Child manifest descriptors (index or list).
    pub manifests: Vec<Descriptor>,
}

impl ManifestView {
    /// Whether the manifest is an index or list.
    pub fn is_index(&self) -> bool {
        self.media_type == OCI_INDEX || self.media_type == DOCKER_MANIFEST_LIST
    }
}

/// Reads a manifest body. `content_type` is the request's Content-Type, if any.
pub fn parse(body: &[u8], content_type: Option<&str>) -> Result<ManifestView, ManifestError> {
    let raw: RawManifest = serde_json::from_slice(body)?;
    let header = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim().to_string())
        .filter(|c| MANIFEST_MEDIA_TYPES.contains(&c.as_str()));
    let media_type = match (&raw.media_type, header) {
        (Some(body), Some(header)) if *body != header => {
            return Err(ManifestError::MediaTypeMismatch {
                body: body.clone(),
                header,
            });
        }
        (Some(body), _) => body.clone(),
        (None, Some(header)) => header,
        (None, None) if raw.manifests.is_some() => OCI_INDEX.to_string(),
        (None, None) => OCI_MANIFEST.to_string(),
    };
    if !MANIFEST_MEDIA_TYPES.contains(&media_type.as_str()) {
        return Err(ManifestError::MediaType(media_type));
    }
    match raw.schema_version {
        Some(2) => {}
        Some(v) => return Err(ManifestError::SchemaVersion(v)),
        None => return Err(ManifestError::Missing("schemaVersion")),
    }
    let subject = raw.subject.map(|s| s.digest.parse()).transpose()?;
    let is_index = media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST;
    let mut blobs = Vec::new();
    let mut children = Vec::new();
    let mut artifact_type = raw.artifact_type;
    let mut config = None;
    let mut layers = Vec::new();
    let mut manifests = Vec::new();
    if is_index {
        manifests = raw.manifests.ok_or(ManifestError::Missing("manifests"))?;
        for m in &manifests {
            children.push(m.digest.parse()?);
        }
    } else {
        let c = raw.config.ok_or(ManifestError::Missing("config"))?;
        blobs.push((c.digest.parse()?, c.size));
        if artifact_type.is_none() {
            artifact_type = Some(c.media_type.clone());
        }
        config = Some(c);
        layers = raw.layers.ok_or(ManifestError::Missing("layers"))?;
        for layer in &layers {
            let digest: Digest = layer.digest.parse()?;
            if layer.urls.as_ref().is_none_or(|u| u.is_empty()) {
                blobs.push((digest, layer.size));
            }
        }
    }
    Ok(ManifestView {
        media_type,
        blobs,
        children,
        subject,
        artifact_type,
        annotations: raw.annotations,
        config,
        layers,
        manifests,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_image_manifest_and_index() {
        let d = Digest::sha256_of(b"x");
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{d}","size":1}},"layers":[{{"mediaType":"a","digest":"{d}","size":1}},{{"mediaType":"b","digest":"{d}","size":1,"urls":["http://x"]}}],"subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{d}","size":1}}}}"#
        );
        let v = parse(m.as_bytes(), Some(OCI_MANIFEST)).unwrap();
        assert_eq!(v.blobs.len(), 2);
        assert_eq!(v.subject, Some(d.clone()));
        assert_eq!(
            v.artifact_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
        assert!(matches!(
            parse(m.as_bytes(), Some(OCI_INDEX)),
            Err(ManifestError::MediaTypeMismatch { .. })
        ));
        let i = format!(r#"{{"schemaVersion":2,"manifests":[{{"digest":"{d}","size":1}}]}}"#);
        let v = parse(i.as_bytes(), None).unwrap();
        assert!(v.is_index());
        assert_eq!(v.children, vec![d]);
        assert!(parse(b"{", None).is_err());
        assert!(
            parse(
                br#"{"schemaVersion":1,"config":{"digest":"x","size":1}}"#,
                None
            )
            .is_err()
        );
    }
}
