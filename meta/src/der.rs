//! DER surgery on signed X.509 structures (certificates, certificate requests): the subject
//! replaced and the structure signed again. Kubernetes puts one O per group in a client
//! certificate's subject, which rcgen's `DistinguishedName` (one value per attribute type)
//! cannot hold; the minted or issued certificate gets the full subject this way.

/// One DER tag-length-value.
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// The header length and content length of the DER element `der` starts with.
pub fn header(der: &[u8]) -> Option<(usize, usize)> {
    let first = *der.get(1)?;
    if first < 0x80 {
        return Some((2, first as usize));
    }
    let n = (first & 0x7f) as usize;
    if n == 0 || n > 4 {
        return None;
    }
    let len = der
        .get(2..2 + n)?
        .iter()
        .fold(0usize, |acc, b| (acc << 8) | *b as usize);
    Some((2 + n, len))
}

/// The DER of an X.509 Name as Kubernetes' clients write a user's: one O per group, then the
/// CN, each in its own relative distinguished name, as UTF8Strings.
pub fn user_subject(user: &str, groups: &[String]) -> Vec<u8> {
    const ORGANIZATION: [u8; 3] = [0x55, 0x04, 0x0a];
    const COMMON_NAME: [u8; 3] = [0x55, 0x04, 0x03];
    let attribute = |oid: &[u8], value: &str| {
        let pair = [tlv(0x06, oid), tlv(0x0c, value.as_bytes())].concat();
        tlv(0x31, &tlv(0x30, &pair))
    };
    let mut name = Vec::new();
    for group in groups {
        name.extend(attribute(&ORGANIZATION, group));
    }
    name.extend(attribute(&COMMON_NAME, user));
    tlv(0x30, &name)
}

/// `signed` (SEQUENCE { info, algorithm, signature }: a certificate or a certificate request)
/// with the subject inside `info` replaced by `subject`, and `info` signed again with `sign`
/// (which returns the signature's bytes for the same algorithm). `info` and `old_subject` must
/// be slices of `signed`, as a parser hands them out. `Ok(None)`: not laid out that way.
pub fn replace_subject<E>(
    signed: &[u8],
    info: &[u8],
    old_subject: &[u8],
    subject: &[u8],
    sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, E>,
) -> Result<Option<Vec<u8>>, E> {
    let offset = |inner: &[u8], outer: &[u8]| {
        let start = (inner.as_ptr() as usize).checked_sub(outer.as_ptr() as usize)?;
        (start + inner.len() <= outer.len()).then_some(start)
    };
    let (Some(info_start), Some(subject_start), Some((info_header, _))) = (
        offset(info, signed),
        offset(old_subject, info),
        header(info),
    ) else {
        return Ok(None);
    };
    if subject_start < info_header {
        return Ok(None);
    }
    let new_info = tlv(
        0x30,
        &[
            &info[info_header..subject_start],
            subject,
            &info[subject_start + old_subject.len()..],
        ]
        .concat(),
    );
    let rest = &signed[info_start + info.len()..];
    let Some(algorithm) = header(rest).and_then(|(h, len)| rest.get(..h + len)) else {
        return Ok(None);
    };
    let signature = sign(&new_info)?;
    let bits = tlv(0x03, &[&[0u8][..], &signature].concat());
    Ok(Some(tlv(
        0x30,
        &[new_info, algorithm.to_vec(), bits].concat(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lengths of 128 bytes and more take the long form.
    #[test]
    fn lengths_round_trip() {
        for len in [0usize, 5, 127, 128, 255, 256, 70000] {
            let element = tlv(0x04, &vec![7u8; len]);
            let (head, parsed) = header(&element).unwrap();
            assert_eq!(parsed, len);
            assert_eq!(head + len, element.len());
        }
        assert_eq!(header(&[0x30]), None);
        assert_eq!(header(&[0x30, 0x80]), None);
    }

    /// The subject is swapped inside the info, the algorithm kept, the new info signed.
    #[test]
    fn the_subject_is_replaced_and_signed_again() {
        let old_subject = tlv(0x30, b"old");
        let info = tlv(
            0x30,
            &[tlv(0x02, &[1]), old_subject.clone(), tlv(0x05, &[])].concat(),
        );
        let algorithm = tlv(0x30, &tlv(0x06, &[1, 2, 3]));
        let signed = tlv(
            0x30,
            &[info.clone(), algorithm.clone(), tlv(0x03, &[0, 9])].concat(),
        );
        let (outer_header, _) = header(&signed).unwrap();
        let info_slice = &signed[outer_header..outer_header + info.len()];
        let (info_header, _) = header(info_slice).unwrap();
        let subject_start = info_header + 3;
        let subject_slice = &info_slice[subject_start..subject_start + old_subject.len()];
        let new_subject = user_subject("alice", &["a".into(), "b".into()]);
        let mut signed_over = Vec::new();
        let out = replace_subject::<()>(&signed, info_slice, subject_slice, &new_subject, |m| {
            signed_over = m.to_vec();
            Ok(vec![0xaa, 0xbb])
        })
        .unwrap()
        .unwrap();
        let expected_info = tlv(
            0x30,
            &[tlv(0x02, &[1]), new_subject.clone(), tlv(0x05, &[])].concat(),
        );
        assert_eq!(signed_over, expected_info);
        let expected = tlv(
            0x30,
            &[expected_info, algorithm, tlv(0x03, &[0, 0xaa, 0xbb])].concat(),
        );
        assert_eq!(out, expected);
        // A subject that is not inside the info is refused.
        let elsewhere = old_subject.clone();
        assert_eq!(
            replace_subject::<()>(&signed, info_slice, &elsewhere, &new_subject, |_| Ok(
                vec![]
            ))
            .unwrap(),
            None
        );
    }
}
