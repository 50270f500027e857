//! kube-apiserver's static token file (`--token-auth-file`): one CSV record a line,
//! `token,user,uid[,"group1,group2"]`; blank lines and lines starting with `#` are skipped.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::state::UserInfo;

/// Why a token file cannot be used; start-up fails with it.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("token file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("token file {path}, line {line}: {message}")]
    Line {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// Reads a token file: each token with the user it authenticates (in its groups and
/// `system:authenticated`).
pub fn load(path: &Path) -> Result<Vec<(String, UserInfo)>, TokenFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// Parses the text of a token file; `path` names it in errors.
pub fn parse(text: &str, path: &Path) -> Result<Vec<(String, UserInfo)>, TokenFileError> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let fail = |message: String| TokenFileError::Line {
            path: path.to_path_buf(),
            line: index + 1,
            message,
        };
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let fields = split_record(line).map_err(fail)?;
        if fields.len() < 3 {
            return Err(fail(format!(
                "must have at least 3 columns (token, user name, user uid), found {}",
                fields.len()
            )));
        }
        if fields.len() > 4 {
            return Err(fail(format!(
                "has {} columns; at most 4 (token, user name, user uid, groups) — quote a list of \
                 groups: \"group1,group2\"",
                fields.len()
            )));
        }
        let token = fields[0].as_str();
        if token.is_empty() {
            return Err(fail("the token is empty".into()));
        }
        if fields[1].is_empty() {
            return Err(fail("the user name is empty".into()));
        }
        if !seen.insert(token.to_string()) {
            return Err(fail("the token is already given on an earlier line".into()));
        }
        let groups: Vec<&str> = fields
            .get(3)
            .map(|g| g.split(',').filter(|g| !g.is_empty()).collect())
            .unwrap_or_default();
        let mut user = UserInfo::new(fields[1].clone(), &groups);
        user.uid = fields[2].clone();
        out.push((token.to_string(), user));
    }
    Ok(out)
}

/// The fields of one CSV record: comma-separated, a field in double quotes may hold commas and
/// `""` for a quote.
fn split_record(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err("a quoted field is not closed".into()),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(c) => return Err(format!("unexpected {c:?} after a quoted field")),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => {
                        fields.push(field);
                        break;
                    }
                    Some('"') => return Err("a quote inside an unquoted field".into()),
                    Some(c) => field.push(c),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_split_as_csv() {
        assert_eq!(split_record("a,b,c").unwrap(), ["a", "b", "c"]);
        assert_eq!(
            split_record(r#"t,u,1,"g1,g2""#).unwrap(),
            ["t", "u", "1", "g1,g2"]
        );
        assert_eq!(split_record(r#""a""b",,"#).unwrap(), ["a\"b", "", ""]);
        assert!(split_record(r#"t,"open"#).is_err());
        assert!(split_record(r#"t,"x"y"#).is_err());
        assert!(split_record(r#"t,x"y"#).is_err());
    }
}
