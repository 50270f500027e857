//! Repository name and tag validation, following the distribution spec's grammar.

/// Longest repository name accepted (the spec suggests clients keep host+name under 255).
const MAX_NAME_LEN: usize = 255;

/// Whether `name` is a valid repository name:
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_LEN && name.split('/').all(is_valid_component)
}

fn is_valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or one or more "-".
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// Whether `tag` is a valid tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn is_valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b[1..]
            .iter()
            .all(|&x| x.is_ascii_alphanumeric() || x == b'_' || x == b'.' || x == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in [
            "a",
            "library/busybox",
            "a.b_c__d---e/f0",
            "demo/hello-world",
        ] {
            assert!(is_valid_name(ok), "{ok}");
        }
        for bad in [
            "", "A", "Demo/x", "a/../b", "..", "a//b", "/a", "a/", "-a", "a-", "a___b", "a..b",
            "a/.", "a:b",
        ] {
            assert!(!is_valid_name(bad), "{bad}");
        }
        assert!(!is_valid_name(&"a".repeat(300)));
    }

    #[test]
    fn tags() {
        assert!(is_valid_tag("latest"));
        assert!(is_valid_tag("_x.Y-1"));
        assert!(!is_valid_tag(".x"));
        assert!(!is_valid_tag("-x"));
        assert!(!is_valid_tag(""));
        assert!(!is_valid_tag(&"a".repeat(129)));
        assert!(!is_valid_tag("a/b"));
    }
}
