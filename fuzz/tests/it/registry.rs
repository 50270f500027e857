//! Registry targets: OCI digests, repository names and tags, image references, and manifests
//! as pushed to the registry or pulled by the node.

use skiff_registry::digest::Digest;

use crate::input::text;

/// A digest prints exactly as it was written (only lower-case hex of the right length parses).
#[test]
fn digest_target() {
    bolero::check!(name = "digest").for_each(|input: &[u8]| {
        let input = text(input);
        if let Ok(digest) = input.parse::<Digest>() {
            assert_eq!(digest.to_string(), input);
            assert_eq!(
                digest.hex().len() * 4,
                if input.starts_with("sha256:") {
                    256
                } else {
                    512
                }
            );
        }
    });
}

/// Names, tags and `HOST[:PORT]/NAME[:TAG][@DIGEST]` references: no panic.
#[test]
fn reference_target() {
    bolero::check!(name = "reference").for_each(|input: &[u8]| {
        let input = text(input);
        let _ = skiff_registry::name::is_valid_name(&input);
        let _ = skiff_registry::name::is_valid_tag(&input);
        let _ = skiff_registry::client::parse_reference(&input);
    });
}

const MEDIA_TYPES: &[Option<&str>] = &[
    None,
    Some("application/vnd.oci.image.manifest.v1+json"),
    Some("application/vnd.oci.image.index.v1+json"),
    Some("application/vnd.docker.distribution.manifest.v2+json"),
    Some("application/vnd.docker.distribution.manifest.list.v2+json; charset=utf-8"),
    Some("text/plain"),
];

/// Manifests and indexes under every content type: a parsed manifest's digests are well formed.
#[test]
fn manifest_target() {
    bolero::check!(name = "manifest").for_each(|input: &[u8]| {
        for content_type in MEDIA_TYPES {
            if let Ok(view) = skiff_registry::manifest::parse(input, *content_type) {
                for (digest, _) in &view.blobs {
                    assert_eq!(
                        digest.to_string().parse::<Digest>().ok().as_ref(),
                        Some(digest)
                    );
                }
            }
        }
    });
}
